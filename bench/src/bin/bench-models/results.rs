//! What the benchmark measures, as plain data: the measuring files fill it
//! in, the report reads it. It is saved as JSON (`results.json`), and the
//! report can be rendered again from that file alone. A field missing from
//! the file (one added since it was written) reads as its default.

use serde::{Deserialize, Deserializer, Serialize};

/// A figure that was not measured is NaN, which JSON writes as `null`:
/// read back, it is NaN again.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One loadgen result.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Point {
    #[serde(deserialize_with = "nan_if_null")]
    pub rps: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p50_us: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p99_us: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub errors: f64,
    /// Server CPU per 100 000 requests: user, system (seconds).
    #[serde(deserialize_with = "nan_if_null")]
    pub cpu_user: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub cpu_sys: f64,
}

/// Everything measured for one model.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Results {
    /// (connections, depth) -> point; `None`: beyond what the model serves.
    pub grid: Vec<((usize, u32), Option<Point>)>,
    /// idle connections -> point (10 active, depth 1): the scale sweep's
    /// points where the model held all it was asked to.
    pub idle: Vec<(usize, Option<Point>)>,
    /// The scale sweep, one point per idle count.
    pub scale: Vec<ScalePoint>,
    /// CPU seconds over the idle window with 10 idle connections.
    #[serde(deserialize_with = "nan_if_null")]
    pub idle_cpu: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub idle_window: f64,
    /// KiB of RSS (a forking model: PSS of its tree) per idle connection
    /// that never spoke, and how many were opened.
    #[serde(deserialize_with = "nan_if_null")]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub depth: u32,
    /// Total, and per system call name (only those above 0.01).
    pub syscalls: Option<(f64, Vec<(String, f64)>)>,
    pub instructions: Option<f64>,
}

/// One point of the scale sweep.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ScalePoint {
    /// Idle connections asked for, and held (fewer if the model stopped).
    pub asked: usize,
    pub held: usize,
    /// Idle connections opened and answered once, per second.
    #[serde(deserialize_with = "nan_if_null")]
    pub open_rate: f64,
    /// The 10 active connections beside them.
    pub active: Point,
    /// KiB per held connection (idle and active): the server's own (RSS,
    /// or its tree's PSS), and the kernel's (both ends of loopback).
    #[serde(deserialize_with = "nan_if_null")]
    pub user_kib: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub kernel_kib: f64,
    /// Server CPU seconds over one second with the crowd silent.
    #[serde(deserialize_with = "nan_if_null")]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Step {
    /// Requests per second offered, and achieved (replies in the window).
    #[serde(deserialize_with = "nan_if_null")]
    pub offered: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub achieved: f64,
    /// Latency from each request's due time, µs.
    #[serde(deserialize_with = "nan_if_null")]
    pub p50_us: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p99_us: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p999_us: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub max_us: f64,
    /// The generator's own lateness (due to sent), µs.
    #[serde(deserialize_with = "nan_if_null")]
    pub late_p99_us: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub late_max_us: f64,
    /// The generator's lateness to read a reply (the kernel's receive stamp
    /// to its read), µs.
    #[serde(deserialize_with = "nan_if_null")]
    pub read_late_p99_us: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub read_late_max_us: f64,
    /// The median round trip (write to read of one request), µs, and with
    /// one request in flight on each connection, the most replies a second
    /// the connections could carry at that round trip (connections ÷ round
    /// trip); 0 when pipelined.
    #[serde(deserialize_with = "nan_if_null")]
    pub rtt_p50_us: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub bound_rps: f64,
    /// With one in flight: requests that waited in the generator for their
    /// connection's last reply, and those still waiting, not sent, when the
    /// window ended.
    #[serde(deserialize_with = "nan_if_null")]
    pub waited: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub unsent: f64,
    #[serde(deserialize_with = "nan_if_null")]
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

    /// The generator itself fell behind, to send on schedule or to read
    /// the replies as they came: the figure is the generator's ceiling, not
    /// the server's.
    pub fn generator_bound(&self) -> bool {
        self.late_to().is_some()
    }

    /// What the generator was late to do, past the slack: "send", "read",
    /// or "send, read".
    pub fn late_to(&self) -> Option<&'static str> {
        let slack = crate::latency::GENERATOR_SLACK_US;
        match (self.late_p99_us > slack, self.read_late_p99_us > slack) {
            (true, true) => Some("send, read"),
            (true, false) => Some("send"),
            (false, true) => Some("read"),
            (false, false) => None,
        }
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
             p99.9 {:.0} µs, max {:.0} µs; generator late p99 {:.0} µs to send, \
             {:.0} µs to read",
            self.offered,
            self.achieved,
            100.0 * self.achieved / self.offered.max(1.0),
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.late_p99_us,
            self.read_late_p99_us
        );
        if self.bound_rps > 0.0 {
            let _ = std::fmt::Write::write_fmt(
                &mut s,
                format_args!(
                    "; round trip {:.0} µs, bound {:.0}/s, {:.0} unsent",
                    self.rtt_p50_us, self.bound_rps, self.unsent
                ),
            );
        }
        if self.held > 0 {
            let _ = std::fmt::Write::write_fmt(&mut s, format_args!(", {} idle held", self.held));
        }
        if let Some(what) = self.late_to() {
            let _ = std::fmt::Write::write_fmt(
                &mut s,
                format_args!(" [generator-bound: late to {what}]"),
            );
        } else if self.at_resolution() {
            s.push_str(" [at the generator's resolution]");
        }
        s
    }
}

/// One model's latency curve beside one idle crowd, in one way of sending.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Curve {
    /// Idle connections asked for, and held (select: at most its wall).
    pub idle: usize,
    pub held: usize,
    /// Active connections carrying the offered load.
    pub conns: usize,
    /// Each connection sent its requests as they fell due, behind replies
    /// still owed; otherwise one in flight, the next waiting for its reply.
    pub pipelined: bool,
    /// Why the model did not run this curve.
    pub why_not: Option<String>,
    pub steps: Vec<Step>,
}

impl Curve {
    /// The sweep's own curve, one in flight on its usual connections; the
    /// others (pipelined, or more connections) are set beside it.
    pub fn is_main(&self) -> bool {
        !self.pipelined && self.conns <= crate::latency::ACTIVE
    }

    /// How it sent, for tables: "1 in flight, 100 conns" or "pipelined, 100 conns".
    pub fn mode(&self) -> String {
        let how = if self.pipelined {
            "pipelined"
        } else {
            "1 in flight"
        };
        format!("{how}, {} conns", self.conns)
    }

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
            return format!("{}, {} idle: {why}", self.mode(), self.idle);
        }
        let knee = self
            .sustainable()
            .map_or("none".into(), |r| format!("{r:.0}/s"));
        let mut s = format!(
            "{}, {} idle held: p99 under 1 ms up to {knee}",
            self.mode(),
            self.held
        );
        for step in &self.steps {
            s.push_str("\n      ");
            s.push_str(&step.summary());
        }
        s
    }
}
