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
    /// Latency against offered load: no idle connections, then the crowd.
    pub latency: Vec<Curve>,
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

/// One step of the latency sweep: loadgen's open loop at one offered rate.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// Requests per second offered, and achieved (replies in the window).
    pub offered: f64,
    pub achieved: f64,
    /// Latency from each request's due time, µs.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// The generator's own lateness (due to sent), µs.
    pub late_p99_us: f64,
    pub late_max_us: f64,
    pub errors: f64,
    /// Idle connections held beside the active ones.
    pub held: usize,
    /// So far behind that requests were still unanswered 10 s after the
    /// window, or the run failed: no latency to report.
    pub lost: bool,
    /// Why the run failed, if it did for another reason than being behind.
    pub failed: Option<String>,
    /// Rounds that ran this step (a saturated model skips its top steps).
    pub rounds: usize,
    /// Rounds set aside because the generator fell behind in them while
    /// another round of the step kept to its schedule.
    pub set_aside: usize,
}

impl Step {
    /// Behind the offered load: under 90% of it achieved, p99 past 100 ms,
    /// or requests lost.
    pub fn saturated(&self) -> bool {
        self.lost || self.achieved < 0.9 * self.offered || self.p99_us > 100_000.0
    }

    /// The generator itself fell behind its schedule: the figure is the
    /// generator's ceiling, not the server's.
    pub fn generator_bound(&self) -> bool {
        self.late_p99_us > crate::latency::GENERATOR_SLACK_US
    }

    /// The p99 is no more than the generator's own lateness: the server's
    /// share cannot be told from the generator's.
    pub fn at_resolution(&self) -> bool {
        !self.lost && self.p99_us <= self.late_p99_us
    }

    /// Meets the latency objective: p99 under 1 ms, the offered rate
    /// carried (95% or more), and the figure the server's.
    pub fn meets_objective(&self) -> bool {
        !self.lost
            && self.p99_us < crate::latency::OBJECTIVE_US
            && self.achieved >= 0.95 * self.offered
            && !self.generator_bound()
    }

    pub fn summary(&self) -> String {
        if let Some(why) = &self.failed {
            return format!("{:.0}/s offered: failed: {why}", self.offered);
        }
        if self.lost {
            return format!("{:.0}/s offered: lost (past saturation)", self.offered);
        }
        let mut s = format!(
            "{:.0}/s offered, {:.0}/s achieved ({:.0}%); p50 {:.0} µs, p99 {:.0} µs, \
             p99.9 {:.0} µs, max {:.0} µs; generator late p99 {:.0} µs",
            self.offered,
            self.achieved,
            100.0 * self.achieved / self.offered.max(1.0),
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.late_p99_us
        );
        if self.held > 0 {
            let _ = std::fmt::Write::write_fmt(&mut s, format_args!(", {} idle held", self.held));
        }
        if self.generator_bound() {
            s.push_str(" [generator-bound]");
        } else if self.at_resolution() {
            s.push_str(" [at the generator's resolution]");
        }
        s
    }
}

/// One model's latency curve beside one idle crowd.
#[derive(Debug, Clone, Default)]
pub struct Curve {
    /// Idle connections asked for, and held (select: at most its wall).
    pub idle: usize,
    pub held: usize,
    /// Why the model did not run this curve.
    pub why_not: Option<String>,
    pub steps: Vec<Step>,
}

impl Curve {
    /// The highest offered rate at which the objective holds. (Not "every
    /// step below it too": this machine stalls now and then for tens of
    /// milliseconds, whatever runs, and a stall that lands on a low step
    /// would otherwise hide every step above it.)
    pub fn sustainable(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter(|s| s.meets_objective())
            .map(|s| s.offered)
            .reduce(f64::max)
    }

    pub fn summary(&self) -> String {
        if let Some(why) = &self.why_not {
            return format!("{} idle: {why}", self.idle);
        }
        let knee = self
            .sustainable()
            .map_or("none".into(), |r| format!("{r:.0}/s"));
        let mut s = format!("{} idle held: p99 under 1 ms up to {knee}", self.held);
        for step in &self.steps {
            s.push_str("\n      ");
            s.push_str(&step.summary());
        }
        s
    }
}
