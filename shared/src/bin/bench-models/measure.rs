//! Starting servers, driving them with loadgen, reading /proc.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{counts, report};
use shared::testing::{TestServer, proc, raise_nofile_limit};

#[derive(clap::Parser, Debug, Clone)]
#[command(about = "Measure every io-models server side by side; write BENCHMARKS.md and charts")]
pub struct Args {
    /// Smoke test: fewer, shorter points and no strace/valgrind counts
    #[arg(long)]
    pub quick: bool,
    /// Where BENCHMARKS.md and bench/*.svg go (default: the workspace root,
    /// or target/bench-quick with --quick)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seconds per throughput point (default 3, quick 0.5)
    #[arg(long)]
    pub secs: Option<f64>,
}

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
    /// KiB of RSS per idle connection, and how many were opened.
    pub rss_per_conn_kib: f64,
    pub rss_conns: usize,
    /// Per-request counts at depth 1 and 16, when measured.
    pub counts: Vec<counts::Counts>,
    /// wrk's requests/s and p99 (ms), and loadgen's point, measured
    /// alternately against one server (HTTP models).
    pub wrk: Option<(f64, f64, Point)>,
}

pub struct Env {
    pub bin_dir: PathBuf,
    pub secs: f64,
    pub quick: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("no directory for this program")?
        .to_path_buf();
    for m in MODELS {
        if !bin_dir.join(m.bin).exists() || !bin_dir.join("loadgen").exists() {
            bail!(
                "{} not found beside this program in {}: build first with \
                 `cargo build --release --workspace`",
                m.bin,
                bin_dir.display()
            );
        }
    }
    let root = workspace_root(&bin_dir);
    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            root.join("target/bench-quick")
        } else {
            root.clone()
        }
    });
    raise_nofile_limit(65_536);
    let env = Env {
        bin_dir,
        secs: args.secs.unwrap_or(if args.quick { 0.3 } else { 2.0 }),
        quick: args.quick,
    };
    // Throughput and latency, interleaved: for each point and round, every
    // model in turn, each on a fresh server, so that the machine's slow
    // drifts fall on all models alike, and no server (the busy loop least of
    // all) runs under another's measurement. A point is the median of its
    // rounds.
    let mut all: Vec<(Model, Results)> = MODELS.iter().map(|m| (*m, Results::default())).collect();
    let conns: &[usize] = if env.quick {
        &[1, 100]
    } else {
        &[1, 10, 100, 1000]
    };
    let idles: &[usize] = if env.quick {
        &[0, 100]
    } else {
        &[0, 100, 500, 1000]
    };
    let rounds = if env.quick { 1 } else { ROUNDS };
    // (connections, depth, idle connections, part of the idle sweep)
    let mut points = Vec::new();
    for depth in [1u32, 16] {
        for &c in conns {
            points.push((c, depth, 0usize, false));
        }
    }
    for &idle in idles {
        points.push((10, 1, idle, true));
    }
    for &(c, depth, idle, sweep) in &points {
        let mut samples: Vec<Vec<Point>> = vec![Vec::new(); MODELS.len()];
        for _ in 0..rounds {
            for (i, m) in MODELS.iter().enumerate() {
                let fits = if sweep {
                    idle <= m.max_idle
                } else {
                    c <= m.max_active
                };
                if fits {
                    let server = start(&env, m, &[]);
                    samples[i].push(loadgen_once(&env, m, &server, c, depth, idle)?);
                }
            }
        }
        eprintln!("== {c} connections, depth {depth}, {idle} idle");
        for ((m, r), mut s) in all.iter_mut().zip(samples) {
            let point = (!s.is_empty()).then(|| {
                s.sort_by(|a, b| a.rps.total_cmp(&b.rps));
                let errors = s.iter().map(|p| p.errors).sum();
                Point {
                    errors,
                    ..s[s.len() / 2]
                }
            });
            eprintln!("   {:<34} {}", m.name, show(point));
            if sweep {
                r.idle.push((idle, point));
            } else {
                r.grid.push(((c, depth), point));
            }
        }
    }
    for (model, results) in &mut all {
        eprintln!("== {}", model.name);
        measure(&env, model, results)?;
    }
    let errors: f64 = all
        .iter()
        .flat_map(|(_, r)| {
            r.grid
                .iter()
                .filter_map(|(_, p)| *p)
                .chain(r.idle.iter().filter_map(|(_, p)| *p))
        })
        .map(|p| p.errors)
        .sum();
    report::write(&out, &env, &all).context("writing the report")?;
    eprintln!("wrote {}", out.join("BENCHMARKS.md").display());
    if errors > 0.0 {
        bail!("{errors} replies did not match");
    }
    Ok(())
}

fn workspace_root(bin_dir: &Path) -> PathBuf {
    // target/release/ -> the workspace root
    bin_dir
        .ancestors()
        .find(|d| d.join("Cargo.toml").exists() && d.join("shared").is_dir())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The measures taken one model at a time: CPU while idle, memory per idle
/// connection, the per-request counts, and the wrk cross-check.
fn measure(env: &Env, m: &Model, r: &mut Results) -> anyhow::Result<()> {
    // CPU while idle, then memory per idle connection.
    let server = start(env, m, &[]);
    let clients: Vec<_> = (0..10).map(|_| server.connect()).collect();
    r.idle_window = if env.quick { 0.5 } else { 3.0 };
    let before = proc::total_cpu(server.pid());
    thread::sleep(Duration::from_secs_f64(r.idle_window));
    r.idle_cpu = (proc::total_cpu(server.pid()) - before).as_secs_f64();
    drop(clients);
    drop(server);

    // A fresh server, so that no earlier client is still being closed. A
    // pool holds the connections beyond its workers in its queue: they
    // cost it a descriptor and a queue slot, not a thread.
    let server = start(env, m, &[]);
    r.rss_conns = if env.quick { 100 } else { 1000 };
    let rss_before = proc::rss_kib(server.pid());
    let fds_before = proc::fd_count(server.pid());
    let idle: Vec<_> = (0..r.rss_conns).map(|_| server.connect()).collect();
    let target = fds_before + r.rss_conns;
    shared::testing::eventually(|| proc::fd_count(server.pid()) >= target);
    thread::sleep(Duration::from_millis(200));
    let grown = proc::rss_kib(server.pid()).saturating_sub(rss_before);
    r.rss_per_conn_kib = grown as f64 / r.rss_conns as f64;
    drop(idle);
    drop(server);
    eprintln!(
        "   idle CPU {:.3} s over {:.0} s; RSS {:.1} KiB per idle connection",
        r.idle_cpu, r.idle_window, r.rss_per_conn_kib
    );

    if !env.quick {
        r.counts = counts::measure(env, m)?;
        if m.proto == "http" {
            r.wrk = wrk(env, m)?;
        }
    }
    Ok(())
}

fn show(p: Option<Point>) -> String {
    match p {
        None => "n/a".into(),
        Some(p) => format!(
            "{:>9.0} req/s, p50 {:>6.0} us, p99 {:>6.0} us, CPU/100k user {:.2} s sys {:.2} s",
            p.rps, p.p50_us, p.p99_us, p.cpu_user, p.cpu_sys
        ),
    }
}

/// Starts a fresh server of model `m`.
pub fn start(env: &Env, m: &Model, extra: &[&str]) -> TestServer {
    let mut command = Command::new(env.bin_dir.join(m.bin));
    command.args(m.args).args(extra);
    TestServer::start_command(command)
}

/// Runs per point: a point is their median, which a noisy 2-core machine
/// needs more than longer runs.
const ROUNDS: usize = 3;

/// One loadgen run against `server`, with the server's CPU over the run.
fn loadgen_once(
    env: &Env,
    m: &Model,
    server: &TestServer,
    conns: usize,
    depth: u32,
    idle: usize,
) -> anyhow::Result<Point> {
    let (user0, sys0) = proc::cpu_time(server.pid());
    let mut load = Command::new(env.bin_dir.join("loadgen"));
    load.args([
        "--addr",
        &server.addr().to_string(),
        "--proto",
        m.proto,
        "--json",
    ])
    .args(["--conns", &conns.to_string(), "--depth", &depth.to_string()])
    .args(["--idle", &idle.to_string(), "--secs", &env.secs.to_string()])
    .args(["--warmup-secs", if env.quick { "0.1" } else { "0.5" }])
    .args(if m.suffix.is_empty() {
        vec![]
    } else {
        vec!["--suffix", m.suffix]
    });
    let out = output_within(load, Duration::from_secs_f64(env.secs + 30.0))?;
    let (user1, sys1) = proc::cpu_time(server.pid());
    let json = String::from_utf8_lossy(&out.stdout);
    if json.trim().is_empty() {
        bail!(
            "loadgen failed against {}: {}",
            m.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The server's CPU over the whole run, warm-up included, per request
    // answered in it.
    let all = json_number(&json, "all_requests");
    let per_100k = |d: Duration| d.as_secs_f64() / all.max(1.0) * 100_000.0;
    Ok(Point {
        rps: json_number(&json, "rps"),
        p50_us: json_number(&json, "p50_us"),
        p99_us: json_number(&json, "p99_us"),
        errors: json_number(&json, "errors"),
        cpu_user: per_100k(user1.saturating_sub(user0)),
        cpu_sys: per_100k(sys1.saturating_sub(sys0)),
    })
}

/// Runs `command` to completion, or kills it after `limit`: a server that
/// stops answering must fail the benchmark, not hang it.
pub fn output_within(
    mut command: Command,
    limit: Duration,
) -> anyhow::Result<std::process::Output> {
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {command:?}"))?;
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{command:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}

/// The number after `"key":` in a flat JSON object.
pub fn json_number(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    json.find(&pat)
        .map(|i| &json[i + pat.len()..])
        .and_then(|rest| rest.split([',', '}']).next()?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// wrk beside loadgen against one HTTP server, alternating, [`ROUNDS`] of
/// each: the medians of requests/s and p99 in ms, wrk's and loadgen's.
fn wrk(env: &Env, m: &Model) -> anyhow::Result<Option<(f64, f64, Point)>> {
    if Command::new("wrk").arg("--version").output().is_err() {
        return Ok(None);
    }
    let server = start(env, m, &[]);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..ROUNDS {
        ours.push(loadgen_once(env, m, &server, 100, 1, 0)?);
        let mut command = Command::new("wrk");
        command
            .args([
                "-t1",
                "-c100",
                &format!("-d{}s", env.secs.ceil()),
                "--latency",
            ])
            .arg(format!("http://{}/", server.addr()));
        let out = output_within(command, Duration::from_secs_f64(env.secs + 30.0))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let rps: Option<f64> = text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok());
        let p99 = text.lines().find_map(|l| {
            let v = l.trim().strip_prefix("99%")?.trim();
            let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
            let num: f64 = num.parse().ok()?;
            Some(match unit {
                "us" => num / 1000.0,
                "ms" => num,
                "s" => num * 1000.0,
                _ => return None,
            })
        });
        if let (Some(r), Some(p)) = (rps, p99) {
            theirs.push((r, p));
        }
    }
    if theirs.is_empty() {
        return Ok(None);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    ours.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let ours_median = ours[ours.len() / 2];
    Ok(Some((
        median(theirs.iter().map(|t| t.0).collect()),
        median(theirs.iter().map(|t| t.1).collect()),
        Point {
            p99_us: median(ours.iter().map(|p| p.p99_us).collect()),
            ..ours_median
        },
    )))
}
