//! Black-box tests of `src/bin/coroutine-article.rs`, gevent's idiom in one
//! file: the wire protocol for ordinary clients.

testkit::article_suite!(testkit::suite::EchoSpec::concurrent(
    env!("CARGO_BIN_EXE_coroutine-article"),
    &[],
    ""
));
