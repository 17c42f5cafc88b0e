//! Running programs for the benchmark: a fresh server of a model, loadgen
//! against it, anything with a deadline.

use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use testkit::{TestServer, proc};

use crate::model::{Env, Model};
use crate::results::Point;

/// Starts a fresh server of model `m`.
pub fn start(env: &Env, m: &Model, extra: &[&str]) -> TestServer {
    let mut command = Command::new(env.bin_dir.join(m.bin));
    command.args(m.args).args(extra);
    TestServer::start_command(command)
}

/// Starts a fresh server of model `m` pinned to core `cpu` (see [`pin`]),
/// with `--max-conns` high enough for an idle crowd beside the active
/// connections (a pool takes none: its capacity is its workers and queue).
pub fn start_pinned(env: &Env, m: &Model, cpu: usize) -> TestServer {
    let mut command = Command::new(env.bin_dir.join(m.bin));
    if m.args.contains(&"pool") {
        command.args(m.args);
    } else {
        command.args(with_max_conns(m.args, "100000"));
    }
    pin(&mut command, cpu);
    TestServer::start_command(command)
}

/// `args` with `--max-conns` set to `n`, replacing any the model has.
pub fn with_max_conns(args: &[&'static str], n: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if *a == "--max-conns" {
            it.next();
        } else {
            out.push((*a).to_string());
        }
    }
    out.extend(["--max-conns".to_string(), n.to_string()]);
    out
}

/// Runs `command` on core `cpu` alone, where the machine has two cores or
/// more (its threads and children too): the latency sweep gives the server
/// one core and the generator another, so that neither takes the other's
/// time. On one core, or off Linux, it runs where the scheduler puts it.
pub fn pin(command: &mut Command, cpu: usize) {
    #[cfg(target_os = "linux")]
    if thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the child between fork and exec; it
        // only fills a cpu_set_t it owns and calls sched_setaffinity, which
        // is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// Whether [`pin`] pins on this machine.
pub fn pinning() -> bool {
    cfg!(target_os = "linux") && thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// One loadgen run against `server`, with the server's CPU over the run.
pub fn loadgen_once(
    env: &Env,
    m: &Model,
    server: &TestServer,
    conns: usize,
    depth: u32,
    idle: usize,
) -> anyhow::Result<Point> {
    // The whole process tree: a forking model's children do its work.
    let (user0, sys0) = proc::tree_cpu_time(server.pid());
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
    let (user1, sys1) = proc::tree_cpu_time(server.pid());
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
