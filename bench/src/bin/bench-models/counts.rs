//! System calls and user-space instructions per request, the counts that do
//! not drift with a noisy machine: each is the difference between a long
//! run of a fixed number of requests and a run of one round per connection
//! (10 connections, 62-byte lines or keep-alive `GET /`), so that start-up
//! and shut-down cancel, and the median of three such pairs.
//!
//! The short run holds start-up, shut-down and the connections' coming and
//! going, and almost no requests, so the difference is the long run's own
//! rate. (Two long runs subtracted would not do: where a model's calls depend
//! on timing, as a read that finds nothing does, two runs differ by more than
//! the requests between them, and the difference magnifies that.)

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use testkit::{TestServer, proc};

use crate::drive::output_within;
use crate::model::{Env, Model};
use crate::results::Counts;

/// Connections the counts are taken with.
const CONNS: usize = 10;

/// The connections used for `m`: [`CONNS`], or as many as it serves at
/// once (a pool).
fn conns(m: &Model) -> usize {
    CONNS.min(m.max_active)
}

/// Pairs of runs per count; the median pair is kept.
const PAIRS: usize = 3;

/// Requests in the long run at `depth`.
fn long_run(depth: u32) -> u64 {
    if depth == 1 { 8_000 } else { 64_000 }
}

pub fn measure(env: &Env, m: &Model) -> anyhow::Result<Vec<Counts>> {
    let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    let (strace, valgrind) = (have("strace"), have("valgrind"));
    if !strace || !valgrind {
        crate::progress::say("   (strace or valgrind missing: counts skipped)");
    }
    let mut all = Vec::new();
    for depth in [1, 16] {
        // One round per connection: every pipeline filled once.
        let short = conns(m) as u64 * u64::from(depth);
        let long = long_run(depth);
        let requests = (long - short) as f64;
        let mut counts = Counts {
            depth,
            ..Counts::default()
        };
        if strace {
            let mut pairs = Vec::new();
            for _ in 0..PAIRS {
                let a = syscalls(env, m, depth, short)?;
                let b = syscalls(env, m, depth, long)?;
                let mut per_name: Vec<(String, f64)> = b
                    .iter()
                    .map(|(name, &calls)| {
                        let before = a.get(name).copied().unwrap_or(0);
                        (name.clone(), (calls as f64 - before as f64) / requests)
                    })
                    .filter(|(_, per)| *per >= 0.01)
                    .collect();
                per_name.sort_by(|x, y| y.1.total_cmp(&x.1));
                let total: f64 = per_name.iter().map(|(_, c)| c).sum();
                pairs.push((total, per_name));
            }
            pairs.sort_by(|x, y| x.0.total_cmp(&y.0));
            counts.syscalls = Some(pairs.swap_remove(PAIRS / 2));
        }
        if valgrind {
            let mut per_request = Vec::new();
            for _ in 0..PAIRS {
                let a = instructions(env, m, depth, short)?;
                let b = instructions(env, m, depth, long)?;
                per_request.push((b as f64 - a as f64) / requests);
            }
            per_request.sort_by(f64::total_cmp);
            counts.instructions = Some(per_request[PAIRS / 2]);
        }
        crate::progress::say(&format!(
            "   depth {depth}: {} system calls, {} instructions per request",
            counts
                .syscalls
                .as_ref()
                .map_or("?".into(), |(t, _)| format!("{t:.2}")),
            counts
                .instructions
                .map_or("?".into(), |i| format!("{i:.0}")),
        ));
        all.push(counts);
    }
    Ok(all)
}

/// One run under `strace -f -c`: calls per system call name.
fn syscalls(
    env: &Env,
    m: &Model,
    depth: u32,
    requests: u64,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let dir = tempdir()?;
    let file = dir.join("strace.txt");
    let mut command = Command::new("strace");
    command
        .args(["-f", "-c", "-o"])
        .arg(&file)
        .arg(env.bin_dir.join(m.bin))
        .args(m.args);
    run_fixed(env, m, command, depth, requests)?;
    let text = fs::read_to_string(&file).context("reading strace's summary")?;
    let _ = fs::remove_dir_all(&dir);
    // Columns: % time, seconds, usecs/call, calls, [errors,] syscall.
    let mut calls = BTreeMap::new();
    for line in text.lines().skip(2) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || fields[0].starts_with('-') || fields.last() == Some(&"total") {
            continue;
        }
        if let Ok(n) = fields[3].parse::<u64>() {
            calls.insert((*fields.last().unwrap()).to_string(), n);
        }
    }
    Ok(calls)
}

/// One run under callgrind: user-space instructions in all, summed over
/// every process of the run (a forking model's children write a file each,
/// named by `%p`, their pid).
fn instructions(env: &Env, m: &Model, depth: u32, requests: u64) -> anyhow::Result<u64> {
    let dir = tempdir()?;
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!(
            "--callgrind-out-file={}/callgrind.out.%p",
            dir.display()
        ))
        .arg(env.bin_dir.join(m.bin))
        .args(m.args);
    run_fixed(env, m, command, depth, requests)?;
    let mut total = 0;
    for entry in fs::read_dir(&dir)? {
        let text = fs::read_to_string(entry?.path()).context("reading callgrind's output")?;
        total += text
            .lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            })
            .and_then(|v| v.trim().parse::<u64>().ok())
            .context("no instruction total in callgrind's output")?;
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(total)
}

/// Starts the server under `command`, sends `requests`, and stops it so
/// that the tool writes its summary: SIGTERM to the server itself (under
/// strace, the child of strace), then one connection, which wakes a server
/// blocked in `io_uring_enter` (valgrind delivers the signal only then).
fn run_fixed(
    env: &Env,
    m: &Model,
    command: Command,
    depth: u32,
    requests: u64,
) -> anyhow::Result<()> {
    let server_command = command.get_program().to_owned();
    let mut server = TestServer::start_command(command);
    let mut load = Command::new(env.bin_dir.join("loadgen"));
    load.args(["--addr", &server.addr().to_string(), "--proto", m.proto])
        .args([
            "--conns",
            &conns(m).to_string(),
            "--depth",
            &depth.to_string(),
        ])
        .args(["--requests", &requests.to_string(), "--json"])
        .args(if m.suffix.is_empty() {
            vec![]
        } else {
            vec!["--suffix", m.suffix]
        });
    let out = output_within(load, Duration::from_secs(300))?;
    if !out.status.success() {
        bail!("loadgen failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // The server process: under strace, strace's child; under valgrind,
    // the process itself (valgrind runs in it).
    let target = if command_is(&server_command, "strace") {
        proc::children(server.pid())
            .first()
            .copied()
            .unwrap_or(server.pid())
    } else {
        server.pid()
    };
    // A forking model's children end as loadgen's connections close; let
    // them finish (and write their counts) before the server is stopped.
    let settle = Instant::now() + Duration::from_secs(60);
    while m.forks && !proc::children(target).is_empty() && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill takes no pointers; the caller's part is the pid, a
    // process this program started and has not reaped, so no other one.
    unsafe {
        libc::kill(target as libc::pid_t, libc::SIGTERM);
    }
    let _ = std::net::TcpStream::connect_timeout(&server.addr(), Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.try_exit_status().is_none() {
        if Instant::now() > deadline {
            bail!("{} did not stop", m.bin);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Whether `program` is the tool named `name`.
fn command_is(program: &std::ffi::OsStr, name: &str) -> bool {
    std::path::Path::new(program).file_name() == Some(std::ffi::OsStr::new(name))
}

fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("bench-models-{}-{n}", std::process::id()));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}
