//! What the benchmark measures, as plain data: the measuring files fill it
//! in, the report reads it.

/// One loadgen result.
#[derive(Debug, Clone, Copy, Default)]
pub struct Point {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub errors: f64,
    /// Server CPU per 100 000 requests: user, system (seconds).
    pub cpu_user: f64,
    pub cpu_sys: f64,
}

/// Everything measured for one model.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// (connections, depth) -> point; `None`: beyond what the model serves.
    pub grid: Vec<((usize, u32), Option<Point>)>,
    /// idle connections -> point (10 active, depth 1): the scale sweep's
    /// points where the model held all it was asked to.
    pub idle: Vec<(usize, Option<Point>)>,
    /// The scale sweep, one point per idle count.
    pub scale: Vec<ScalePoint>,
    /// CPU seconds over the idle window with 10 idle connections.
    pub idle_cpu: f64,
    pub idle_window: f64,
    /// KiB of RSS (a forking model: PSS of its tree) per idle connection
    /// that never spoke, and how many were opened.
    pub rss_per_conn_kib: f64,
    /// The same for connections that made one round trip first; `None`
    /// where the model cannot answer that many at once (a pool).
    pub rss_spoken_kib: Option<f64>,
    pub rss_conns: usize,
    /// Per-request counts at depth 1 and 16, when measured.
    pub counts: Vec<Counts>,
    /// wrk's requests/s and p99 (ms), and loadgen's point, measured
    /// alternately against one server (HTTP models).
    pub wrk: Option<(f64, f64, Point)>,
}

/// Counts per request at one depth.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub depth: u32,
    /// Total, and per system call name (only those above 0.01).
    pub syscalls: Option<(f64, Vec<(String, f64)>)>,
    pub instructions: Option<f64>,
}

/// One point of the scale sweep.
#[derive(Debug, Clone, Default)]
pub struct ScalePoint {
    /// Idle connections asked for, and held (fewer if the model stopped).
    pub asked: usize,
    pub held: usize,
    /// Idle connections opened and answered once, per second.
    pub open_rate: f64,
    /// The 10 active connections beside them.
    pub active: Point,
    /// KiB per held connection (idle and active): the server's own (RSS,
    /// or its tree's PSS), and the kernel's (both ends of loopback).
    pub user_kib: f64,
    pub kernel_kib: f64,
    /// Server CPU seconds over one second with the crowd silent.
    pub idle_cpu: f64,
    /// The burst: replies right, wrong or missing, seconds.
    pub burst: Option<(usize, usize, f64)>,
    /// Why fewer than asked were held.
    pub stopped: Option<String>,
    /// io_uring multishot: receives re-armed after ENOBUFS, as its log told.
    pub rearmed: Option<u64>,
    /// A newcomer was answered afterwards.
    pub alive: bool,
}
