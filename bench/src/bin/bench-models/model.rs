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
    /// A process per connection: CPU and memory are its process tree's.
    pub forks: bool,
}

const ANY: usize = usize::MAX;

/// What most models are: an echo server with no limit that matters here.
const ECHO: Model = Model {
    name: "",
    bin: "",
    args: &[],
    proto: "line",
    suffix: "",
    max_active: ANY,
    max_idle: ANY,
    forks: false,
};

pub const MODELS: &[Model] = &[
    Model {
        name: "blocking, thread per connection",
        bin: "blocking-echo",
        args: &["--mode", "thread"],
        ..ECHO
    },
    Model {
        name: "blocking, pool of 8 threads",
        bin: "blocking-echo",
        args: &["--mode", "pool", "--workers", "8", "--queue", "4096"],
        max_active: 8,
        max_idle: 0,
        ..ECHO
    },
    Model {
        name: "blocking, process per connection",
        bin: "blocking-echo",
        args: &["--mode", "fork"],
        forks: true,
        ..ECHO
    },
    Model {
        name: "non-blocking busy loop",
        bin: "nonblocking-echo",
        ..ECHO
    },
    Model {
        name: "select",
        bin: "select-echo",
        args: &["--max-conns", "1010"],
        max_active: 1000,
        max_idle: 1000,
        ..ECHO
    },
    Model {
        name: "poll",
        bin: "select-echo",
        args: &["--poll"],
        ..ECHO
    },
    Model {
        name: "selectors (polling, epoll)",
        bin: "selectors-echo",
        suffix: "_SB",
        ..ECHO
    },
    Model {
        name: "signal-driven (SIGRTMIN, signalfd)",
        bin: "sigio-echo",
        ..ECHO
    },
    Model {
        name: "coroutines (async-io, one thread)",
        bin: "coroutine-echo",
        ..ECHO
    },
    Model {
        name: "io_uring multishot",
        bin: "iocp-accept",
        ..ECHO
    },
    Model {
        name: "io_uring single-shot (the IOCP shape)",
        bin: "iocp-accept",
        args: &["--single-shot"],
        ..ECHO
    },
    Model {
        name: "epoll LT, HTTP",
        bin: "epoll-http",
        // Nagle off, as every echo server has it: otherwise a reply can
        // wait for the client's delayed ACK.
        args: &["--nodelay"],
        proto: "http",
        ..ECHO
    },
    Model {
        name: "epoll ET, HTTP",
        bin: "epoll-http",
        args: &["--edge", "--nodelay"],
        proto: "http",
        ..ECHO
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
    /// The models measured: all of [`MODELS`], or those `--only` names.
    pub models: Vec<Model>,
    /// Rounds of the latency sweep (a step is their median).
    pub latency_rounds: usize,
    /// The machine the run measured.
    pub host: Host,
}

/// The machine a run measured, as the report describes it: read once when
/// the run starts and saved with its results, so that a report rendered
/// again from them describes the machine they came from.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Host {
    pub cpu: String,
    pub cores: usize,
    pub mem_kib: u64,
    pub kernel: String,
    /// Server and generator pinned to different cores.
    pub pinned: bool,
    /// The hard limit on descriptors, and the scale sweep's top count
    /// under it.
    pub nofile_hard: u64,
    pub scale_ceiling: usize,
}
