//! Throughput, latency, CPU and memory, read from loadgen and `/proc`.

use std::process::Command;
use std::thread;
use std::time::Duration;

use testkit::{eventually, proc};

use crate::drive::{loadgen_once, output_within, start};
use crate::model::{Env, Model};
use crate::results::{Point, Results};

/// Runs per point: a point is their median, which a noisy 2-core machine
/// needs more than longer runs.
const ROUNDS: usize = 3;

/// The active connections of the grid.
fn conns(env: &Env) -> &'static [usize] {
    if env.quick {
        &[1, 100]
    } else {
        &[1, 10, 100, 1000]
    }
}

/// Loadgen runs the grid makes, for the progress bar.
pub fn planned(env: &Env) -> u64 {
    let rounds = if env.quick { 1 } else { ROUNDS };
    let runs: usize = conns(env)
        .iter()
        .map(|&c| env.models.iter().filter(|m| c <= m.max_active).count())
        .sum();
    (2 * rounds * runs) as u64
}

/// Throughput and latency at every point of the grid (connections × depth),
/// for every model. (Latency beside idle connections is the scale sweep's,
/// `scale.rs`.)
///
/// Interleaved: for each point and round, every model in turn, each on a
/// fresh server, so that the machine's slow drifts fall on all models alike,
/// and no server (the busy loop least of all) runs under another's
/// measurement. A point is the median of its rounds.
pub fn grid(env: &Env) -> anyhow::Result<Vec<(Model, Results)>> {
    let mut all: Vec<(Model, Results)> = env
        .models
        .iter()
        .map(|m| (*m, Results::default()))
        .collect();
    let conns = conns(env);
    let rounds = if env.quick { 1 } else { ROUNDS };
    // (connections, depth, idle connections, part of the idle sweep)
    let mut points = Vec::new();
    for depth in [1u32, 16] {
        for &c in conns {
            points.push((c, depth, 0usize, false));
        }
    }
    for &(c, depth, idle, sweep) in &points {
        let mut samples: Vec<Vec<Point>> = vec![Vec::new(); env.models.len()];
        for _ in 0..rounds {
            for (i, m) in env.models.iter().enumerate() {
                let fits = if sweep {
                    idle <= m.max_idle
                } else {
                    c <= m.max_active
                };
                if fits {
                    let server = start(env, m, &[]);
                    samples[i].push(loadgen_once(env, m, &server, c, depth, idle)?);
                    crate::progress::step(&format!("{}: {c} connections, depth {depth}", m.name));
                }
            }
        }
        crate::progress::say(&format!("== {c} connections, depth {depth}, {idle} idle"));
        for ((m, r), mut s) in all.iter_mut().zip(samples) {
            let point = (!s.is_empty()).then(|| {
                s.sort_by(|a, b| a.rps.total_cmp(&b.rps));
                let errors = s.iter().map(|p| p.errors).sum();
                Point {
                    errors,
                    ..s[s.len() / 2]
                }
            });
            let why_not = if sweep {
                format!(
                    "not run: it cannot hold idle connections beside 10 active ones (at most {})",
                    m.max_idle
                )
            } else {
                format!(
                    "not run: it serves at most {} connections at once",
                    m.max_active
                )
            };
            crate::progress::say(&format!("   {:<34} {}", m.name, show(point, &why_not)));
            if sweep {
                r.idle.push((idle, point));
            } else {
                r.grid.push(((c, depth), point));
            }
        }
    }
    Ok(all)
}

/// The measures taken one model at a time: CPU while idle, then memory per
/// idle connection, for connections that never spoke and for connections
/// that made one round trip.
pub fn idle_and_memory(env: &Env, m: &Model, r: &mut Results) {
    let server = start(env, m, &[]);
    let clients: Vec<_> = (0..10).map(|_| server.connect()).collect();
    r.idle_window = if env.quick { 0.5 } else { 3.0 };
    let before = proc::tree_cpu(server.pid());
    thread::sleep(Duration::from_secs_f64(r.idle_window));
    r.idle_cpu = (proc::tree_cpu(server.pid()) - before).as_secs_f64();
    drop(clients);
    drop(server);

    r.rss_conns = if env.quick { 100 } else { 1000 };
    r.rss_per_conn_kib = memory_per_connection(env, m, r.rss_conns, false);
    // A connection that has spoken may keep buffers a silent one never
    // set up. A pool cannot answer more clients than it has workers: the
    // rest wait in its queue, unanswered.
    r.rss_spoken_kib =
        (r.rss_conns <= m.max_active).then(|| memory_per_connection(env, m, r.rss_conns, true));
    crate::progress::say(&format!(
        "   idle CPU {:.3} s over {:.1} s; {} {:.1} KiB per silent idle connection, {} after one round trip",
        r.idle_cpu,
        r.idle_window,
        if m.forks { "PSS" } else { "RSS" },
        r.rss_per_conn_kib,
        r.rss_spoken_kib.map_or(
            "not measured (a pool answers only its workers' clients)".into(),
            |k| format!("{k:.1} KiB")
        ),
    ));
}

/// Memory added per connection: a fresh server (so that no earlier client
/// is still being closed), measured before and after `conns` connections,
/// each silent or having made one round trip. A pool holds the connections
/// beyond its workers in its queue: they cost it a descriptor and a queue
/// slot, not a thread. A forking model is measured as its process tree's
/// proportional set size (PSS): RSS would count the pages each child shares
/// with the parent once per child.
fn memory_per_connection(env: &Env, m: &Model, conns: usize, spoken: bool) -> f64 {
    let memory = |pid| {
        if m.forks {
            proc::tree_pss_kib(pid)
        } else {
            proc::tree_rss_kib(pid)
        }
    };
    let server = start(env, m, &[]);
    let before = memory(server.pid());
    let fds_before = proc::tree_fd_count(server.pid());
    let mut idle: Vec<_> = (0..conns).map(|_| server.connect()).collect();
    if spoken {
        for (i, c) in idle.iter_mut().enumerate() {
            if m.proto == "http" {
                // One keep-alive request, its response read to the end.
                c.send(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n");
                while c.read_line().is_ok_and(|l| l != b"\r\n" && !l.is_empty()) {}
                let _ = c.read_exact(b"Hello, world!".len());
            } else {
                c.request(&format!("hello from connection {i}"));
            }
        }
    }
    let target = fds_before + conns;
    // A server that has not taken every connection by now would have its
    // memory divided among connections it does not hold: divide by those
    // it holds, and say so.
    let mut held = conns;
    if !eventually(|| proc::tree_fd_count(server.pid()) >= target) {
        held = proc::tree_fd_count(server.pid()).saturating_sub(fds_before);
        crate::progress::say(&format!(
            "   warning: the server holds {held} of {conns} connections after waiting; \
             memory per connection is counted over those {held}"
        ));
    }
    thread::sleep(Duration::from_millis(200));
    let grown = memory(server.pid()).saturating_sub(before);
    drop(idle);
    grown as f64 / held.max(1) as f64
}

/// One point as the progress log shows it; `why_not` says why there is none.
fn show(p: Option<Point>, why_not: &str) -> String {
    match p {
        None => why_not.into(),
        Some(p) => format!(
            "{:>9.0} req/s, p50 {:>6.0} us, p99 {:>6.0} us, CPU/100k user {:.2} s sys {:.2} s",
            p.rps, p.p50_us, p.p99_us, p.cpu_user, p.cpu_sys
        ),
    }
}

/// wrk beside loadgen against one HTTP server, alternating, [`ROUNDS`] of
/// each: the medians of requests/s and p99 in ms, wrk's and loadgen's.
pub fn wrk(env: &Env, m: &Model) -> anyhow::Result<Option<(f64, f64, Point)>> {
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
