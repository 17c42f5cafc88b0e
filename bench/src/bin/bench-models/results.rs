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
    /// idle connections -> point (10 active, depth 1).
    pub idle: Vec<(usize, Option<Point>)>,
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
