//! The scale sweep: every model holding N idle connections that each made
//! one round trip (N = 1000, 5000, 10 000, and the ceiling: this machine's
//! descriptor limit less a margin), then 10 active connections measured
//! beside them, then a burst in which every idle connection sends a line
//! at once. Memory is read while the crowd is held: the server's own, and
//! the kernel's (slab, kernel stacks and page tables from /proc/meminfo,
//! so both ends of every loopback connection, and whatever else the
//! machine did meanwhile).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use testkit::{TestServer, proc};

use crate::drive::{json_number, with_max_conns};
use crate::model::{Env, Model};
use crate::results::{Point, ScalePoint};

/// Runs at the points the targets compare (none idle, and the ceiling):
/// their p99 is the median of these. The points between run once.
const ROUNDS: usize = 3;

/// Connections loadgen keeps active beside the idle crowd.
const ACTIVE: usize = 10;

/// The most idle connections one server and one loadgen can hold here:
/// the lower of their descriptor limits (the same hard limit, since both
/// are this program's children), less what each keeps for itself, the 10
/// active connections, and a margin.
pub fn ceiling() -> usize {
    let hard = shared::limits::raise_descriptor_limit().map_or(1024, |l| l.hard);
    usize::try_from(hard)
        .unwrap_or(usize::MAX)
        .saturating_sub(shared::limits::RESERVED + ACTIVE + 100)
}

/// The idle counts of the sweep.
pub fn counts(env: &Env) -> Vec<usize> {
    if env.quick {
        vec![1000]
    } else {
        vec![0, 1000, 5000, 10_000, ceiling()]
    }
}

/// Which models the sweep runs: all but the pool, whose workers the idle
/// clients would hold (the rest wait in its queue, unanswered); with
/// `--quick`, one of each family.
pub fn runs(env: &Env, m: &Model) -> bool {
    let quick_pick = [
        "blocking, thread per connection",
        "poll",
        "selectors (polling, epoll)",
        "io_uring multishot",
        "epoll LT, HTTP",
    ];
    m.max_idle > 0 && (!env.quick || quick_pick.contains(&m.name))
}

/// Points the sweep runs, for the progress bar.
pub fn planned(env: &Env) -> u64 {
    let counts = counts(env);
    let top = *counts.last().expect("at least one count");
    let models = env.models.iter().filter(|m| runs(env, m)).count();
    counts
        .iter()
        .map(|&n| {
            let rounds = if env.quick || (n != 0 && n != top) {
                1
            } else {
                ROUNDS
            };
            (rounds * models) as u64
        })
        .sum()
}

/// The sweep, interleaved as the grid is: for each count and round, every
/// model in turn on a fresh server.
pub fn sweep(env: &Env, models: &[Model]) -> anyhow::Result<Vec<Vec<ScalePoint>>> {
    let counts = counts(env);
    let top = *counts.last().expect("at least one count");
    let mut all: Vec<Vec<ScalePoint>> = vec![Vec::new(); models.len()];
    for &n in &counts {
        let rounds = if env.quick || (n != 0 && n != top) {
            1
        } else {
            ROUNDS
        };
        let mut samples: Vec<Vec<ScalePoint>> = vec![Vec::new(); models.len()];
        for _ in 0..rounds {
            for (i, m) in models.iter().enumerate() {
                if runs(env, m) {
                    samples[i].push(one(env, m, n)?);
                    crate::progress::step(&format!("scale: {} with {n} idle", m.name));
                }
            }
        }
        crate::progress::say(&format!(
            "== scale: {n} idle connections beside {ACTIVE} active"
        ));
        for ((m, points), mut s) in models.iter().zip(&mut all).zip(samples) {
            if s.is_empty() {
                continue;
            }
            // The median round by p99, the figure the targets compare.
            s.sort_by(|a, b| a.active.p99_us.total_cmp(&b.active.p99_us));
            let p = s.swap_remove(s.len() / 2);
            crate::progress::say(&format!("   {:<34} {}", m.name, p.summary()));
            points.push(p);
        }
    }
    Ok(all)
}

/// The kernel's memory that grows with connections and tasks, in KiB:
/// slab objects in use (sockets, their files, dentries and inodes, epoll
/// items, io_uring requests), kernel stacks (a thread or process each) and
/// page tables (a process each).
///
/// Slab is counted as objects in use, from /proc/slabinfo (root only),
/// not as /proc/meminfo's `Slab:`, which counts pages: a cache keeps the
/// pages of freed objects, so after an earlier run a thousand new sockets
/// may fit in pages already counted, and the growth would read as nothing.
fn kernel_kib() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    let slab = std::fs::read_to_string("/proc/slabinfo").map_or_else(
        |_| field("Slab:"),
        |info| {
            // name, active_objs, num_objs, objsize, …
            let bytes: u64 = info
                .lines()
                .skip(2)
                .filter_map(|l| {
                    let mut f = l.split_whitespace().skip(1);
                    let active: u64 = f.next()?.parse().ok()?;
                    let size: u64 = f.nth(1)?.parse().ok()?;
                    Some(active * size)
                })
                .sum();
            bytes / 1024
        },
    );
    slab + field("KernelStack:") + field("PageTables:")
}

/// The server's own memory: RSS, or the tree's PSS for a forking model.
fn server_kib(m: &Model, server: &TestServer) -> u64 {
    if m.forks {
        proc::tree_pss_kib(server.pid())
    } else {
        proc::tree_rss_kib(server.pid())
    }
}

/// One point: a fresh server, loadgen holding `n` idle connections.
fn one(env: &Env, m: &Model, n: usize) -> anyhow::Result<ScalePoint> {
    let mut command = Command::new(env.bin_dir.join(m.bin));
    command.args(with_max_conns(m.args, "100000"));
    let server = TestServer::start_command(command);
    let kernel0 = kernel_kib();
    let user0 = server_kib(m, &server);

    let secs = if env.quick { 0.5 } else { 2.0 };
    let mut load = Command::new(env.bin_dir.join("loadgen"));
    load.args(["--addr", &server.addr().to_string(), "--proto", m.proto])
        .args(["--conns", &ACTIVE.to_string(), "--idle", &n.to_string()])
        .args(["--hold-secs", "1.5", "--secs", &secs.to_string()])
        .args(["--warmup-secs", "0.3", "--json"])
        .args(if n > 0 { vec!["--burst"] } else { vec![] })
        .args(if m.suffix.is_empty() {
            vec![]
        } else {
            vec!["--suffix", m.suffix]
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = load.spawn().context("cannot run loadgen")?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Opening: a forking server accepts some 1500 a second.
    let held_line = rx.recv_timeout(Duration::from_secs(120));
    let Ok(held_line) = held_line else {
        let _ = child.kill();
        let out = child.wait_with_output()?;
        bail!(
            "{}: loadgen held nothing within 120 s: {}",
            m.name,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let held = json_number(&held_line, "held") as usize;
    let open_secs = json_number(&held_line, "idle_secs");
    // Memory and CPU while the crowd sits silent.
    thread::sleep(Duration::from_millis(200));
    let kernel = kernel_kib().saturating_sub(kernel0);
    let user = server_kib(m, &server).saturating_sub(user0);
    let cpu0 = proc::tree_cpu(server.pid());
    thread::sleep(Duration::from_secs(1));
    let idle_cpu = (proc::tree_cpu(server.pid()) - cpu0).as_secs_f64();

    let result = rx.recv_timeout(Duration::from_secs_f64(secs + 120.0));
    let status = child.wait()?;
    let Ok(json) = result else {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        bail!("{}: loadgen failed ({status}): {err}", m.name);
    };
    let conns = (held + ACTIVE) as f64;
    let mut point = ScalePoint {
        asked: n,
        held,
        open_rate: if n == 0 {
            0.0
        } else {
            held as f64 / open_secs.max(1e-6)
        },
        active: Point {
            rps: json_number(&json, "rps"),
            p50_us: json_number(&json, "p50_us"),
            p99_us: json_number(&json, "p99_us"),
            errors: json_number(&json, "errors"),
            ..Point::default()
        },
        user_kib: user as f64 / conns,
        kernel_kib: kernel as f64 / conns,
        idle_cpu,
        burst: (n > 0).then(|| {
            (
                json_number(&json, "burst_replies") as usize,
                json_number(&json, "burst_wrong") as usize,
                json_number(&json, "burst_secs"),
            )
        }),
        stopped: None,
        rearmed: None,
        alive: true,
    };
    if held < n {
        point.stopped = Some(why_stopped(&server.log(), &json));
    }
    // A multishot server tells a burst of ENOBUFS once a second has passed,
    // at its next batch: a newcomer's. Every model gets the newcomer.
    if m.bin == "iocp-accept" && !m.args.contains(&"--single-shot") {
        thread::sleep(Duration::from_millis(1100));
    }
    point.alive = m.proto != "line" || {
        let mut c = server.connect();
        c.request("newcomer") == format!("NEWCOMER{}\n", m.suffix)
    };
    point.rearmed = server
        .log()
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("out of provided buffers for ")?;
            let (_, rest) = rest.split_once(" s: ")?;
            rest.split_once(" receives re-armed")?.0.parse::<u64>().ok()
        })
        .reduce(|a, b| a + b);
    Ok(point)
}

/// Why a server held fewer than asked: the ceiling its log names, or what
/// loadgen saw.
fn why_stopped(log: &str, json: &str) -> String {
    // The ceiling's own line, refused or paused, if the log has one.
    for said in ["; refusing new clients", "; pausing accepts"] {
        if let Some(line) = log.lines().find(|l| l.contains(said)) {
            let what = line.split("] ").nth(1).unwrap_or(line);
            return what
                .trim_end_matches(" (said once until it clears)")
                .to_string();
        }
    }
    let stopped = json
        .split("\"idle_stopped\":\"")
        .nth(1)
        .and_then(|rest| rest.split("\",").next())
        .unwrap_or("unknown");
    format!("loadgen: {stopped}")
}

impl ScalePoint {
    /// One line of the progress log.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "held {:>5} ({:>6.0}/s) p50 {:>6.0} us p99 {:>6.0} us, user {:.2} KiB + kernel {:.2} KiB a connection, idle CPU {:.3} s",
            self.held,
            self.open_rate,
            self.active.p50_us,
            self.active.p99_us,
            self.user_kib,
            self.kernel_kib,
            self.idle_cpu
        );
        if let Some((right, wrong, secs)) = self.burst {
            s += &format!(", burst {right} right {wrong} wrong in {secs:.3} s");
        }
        if let Some(r) = self.rearmed {
            s += &format!(", {r} ENOBUFS re-arms");
        }
        if let Some(why) = &self.stopped {
            s += &format!("; stopped: {why}");
        }
        if !self.alive {
            s += "; NO ANSWER AFTERWARDS";
        }
        s
    }
}
