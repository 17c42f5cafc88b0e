//! What the benchmark runs: the models, and the settings of one run. Data
//! only; every other file reads it.

use std::path::PathBuf;

/// One server as the benchmark runs it. Adding a server is one line in
/// [`MODELS`].
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The name in tables and charts.
    pub name: &'static str,
    pub bin: &'static str,
    pub args: &'static [&'static str],
    /// `line` or `http`, for loadgen's `--proto`.
    pub proto: &'static str,
    /// Reply suffix, for loadgen's `--suffix`.
    pub suffix: &'static str,
    /// Most connections it serves at once (a pool: its workers).
    pub max_active: usize,
    /// Most idle connections it can hold beside 10 active ones.
    pub max_idle: usize,
}

const ANY: usize = usize::MAX;

pub const MODELS: &[Model] = &[
    Model {
        name: "blocking, thread per connection",
        bin: "blocking-echo",
        args: &["--mode", "thread"],
        proto: "line",
        suffix: "",
        max_active: ANY,
        max_idle: ANY,
    },
    Model {
        name: "blocking, pool of 8 threads",
        bin: "blocking-echo",
        args: &["--mode", "pool", "--workers", "8", "--queue", "4096"],
        proto: "line",
        suffix: "",
        max_active: 8,
        max_idle: 0,
    },
    Model {
        name: "non-blocking busy loop",
        bin: "nonblocking-echo",
        args: &[],
        proto: "line",
        suffix: "",
        max_active: ANY,
        max_idle: ANY,
    },
    Model {
        name: "select",
        bin: "select-echo",
        args: &["--max-conns", "1010"],
        proto: "line",
        suffix: "",
        max_active: 1000,
        max_idle: 1000,
    },
    Model {
        name: "selectors (polling, epoll)",
        bin: "selectors-echo",
        args: &[],
        proto: "line",
        suffix: "_SB",
        max_active: ANY,
        max_idle: ANY,
    },
    Model {
        name: "io_uring completions",
        bin: "iocp-accept",
        args: &[],
        proto: "line",
        suffix: "",
        max_active: ANY,
        max_idle: ANY,
    },
    Model {
        name: "epoll LT, HTTP",
        bin: "epoll-http",
        args: &[],
        proto: "http",
        suffix: "",
        max_active: ANY,
        max_idle: ANY,
    },
    Model {
        name: "epoll ET, HTTP",
        bin: "epoll-http",
        args: &["--edge"],
        proto: "http",
        suffix: "",
        max_active: ANY,
        max_idle: ANY,
    },
];

/// The settings of one run.
#[derive(Debug)]
pub struct Env {
    /// Where the release binaries are (this program's own directory).
    pub bin_dir: PathBuf,
    /// Seconds per throughput point.
    pub secs: f64,
    /// `--quick`: fewer, shorter points, no counts.
    pub quick: bool,
}
