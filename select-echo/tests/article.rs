//! Black-box tests of `src/bin/select-article.rs`, the article's program in
//! one file: the wire protocol for ordinary clients (docs/protocol.md).
#![cfg(unix)]

testkit::article_suite!(testkit::suite::EchoSpec::concurrent(
    env!("CARGO_BIN_EXE_select-article"),
    &[],
    "",
));
