//! Black-box tests of `src/bin/blocking-article.rs`, the article's serial
//! server in one file: the wire protocol for ordinary clients, one client at
//! a time.

testkit::article_suite!(testkit::suite::EchoSpec {
    bin: env!("CARGO_BIN_EXE_blocking-article"),
    args: &[],
    suffix: "",
    concurrent: false,
    busy_polls: false,
});
