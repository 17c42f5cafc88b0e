//! Black-box tests of `src/bin/nonblocking-article.rs`, the article's busy
//! loop in one file: the wire protocol for ordinary clients.

testkit::article_suite!(testkit::suite::EchoSpec::concurrent(
    env!("CARGO_BIN_EXE_nonblocking-article"),
    &[],
    ""
));
