//! A server run under `strace -f -ttt -T`, and strace's output read back
//! as calls: who made each, when it began, how long it took.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use testkit::{TestServer, proc};

use crate::Target;
use crate::client::{self, Steps};

/// How long the server is left alone after its ready line, so that the
/// trace's window holds no start-up call: at least half a second, and
/// clear of the 0.5 s and 1 s timeouts some loops wake up for, so that no
/// timeout lands in the window and the calls are the same on every run.
pub const IDLE: Duration = Duration::from_millis(750);

/// How long the server is left after the last reply, before it is stopped.
const SETTLE: Duration = Duration::from_millis(50);

/// Strings longer than this are cut by strace; the render elides them all.
const STRING_LIMIT: &str = "24";

/// One system call (or a signal, or an exit) as strace saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The thread or process that made it.
    pub tid: u32,
    /// When it began, seconds since the epoch.
    pub start: f64,
    /// How long it took, seconds; 0 for signals and exits, and for a call
    /// still unfinished when the trace ended.
    pub took: f64,
    /// The call's name: `recvfrom`, or `---` for a signal, `+++` for an exit.
    pub name: String,
    /// The whole call as strace printed it, arguments and result, without
    /// pid, timestamp and duration.
    pub text: String,
    pub finished: bool,
}

impl Call {
    pub fn end(&self) -> f64 {
        self.start + self.took
    }
}

/// Everything one traced run gives.
pub struct Trace {
    pub calls: Vec<Call>,
    /// The client's steps: the window is from its `connect` to its last
    /// reply.
    pub steps: Steps,
    /// The process strace started: the server's main thread.
    pub main: u32,
}

/// Runs `t`'s server under strace through the client's exchange.
pub fn trace(bin: &Path, t: &Target) -> anyhow::Result<Trace> {
    let dir = std::env::temp_dir().join(format!("trace-models-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let file = dir.join("strace.txt");
    let mut command = Command::new("strace");
    command
        .args(["-f", "-ttt", "-T", "-qq", "-s", STRING_LIMIT, "-o"])
        .arg(&file)
        .arg(bin)
        .args(t.args);
    let mut server = TestServer::start_command(command);
    std::thread::sleep(IDLE);
    let (steps, _connection) = client::exchange(server.addr(), t.http)?;
    // Back to its wait before it is stopped, so that the calls still under
    // way at the last reply are shown as waits, not as the stop's victims.
    std::thread::sleep(SETTLE);
    // Under strace, the server is strace's child: it is the one stopped, so
    // that strace sees it exit and writes out everything.
    let main = proc::children(server.pid())
        .first()
        .copied()
        .context("strace started no server")?;
    // SAFETY: kill takes no pointers; the caller's part is the pid, a
    // process this program started and has not reaped, so no other one.
    unsafe {
        libc::kill(main as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.try_exit_status().is_none() {
        if Instant::now() > deadline {
            bail!("{} did not stop", t.krate);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = fs::read_to_string(&file).context("reading strace's output")?;
    let _ = fs::remove_dir_all(&dir);
    Ok(Trace {
        calls: parse(&text),
        steps,
        main,
    })
}

/// Seconds since the epoch, as strace's `-ttt` prints them.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// strace's lines as calls, in the order they began. A call that another
/// thread's line interrupted comes in two lines, `name(args <unfinished
/// ...>` and `<... name resumed>rest) = result <took>`: joined here.
pub fn parse(text: &str) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    for line in text.lines() {
        let Some((tid, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(tid) = tid.parse::<u32>() else {
            continue;
        };
        let Some((stamp, body)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(start) = stamp.parse::<f64>() else {
            continue;
        };
        let (body, took) = split_took(body);
        if let Some(resumed) = body.strip_prefix("<... ") {
            // `<... name resumed>rest`: finish the open call of this thread.
            let Some((name, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            if let Some(open) = calls
                .iter_mut()
                .rev()
                .find(|c| c.tid == tid && !c.finished && c.name == name)
            {
                // Killed while waiting: `<... name resumed> <unfinished ...>) = ?`.
                let tail = tail.trim_start().trim_start_matches("<unfinished ...>");
                if open.text.ends_with(',') {
                    open.text.push(' ');
                }
                open.text.push_str(tail.trim_start());
                open.took = took.unwrap_or(start - open.start);
                open.finished = true;
            }
            continue;
        }
        let (text, finished) = match body.strip_suffix(" <unfinished ...>") {
            Some(head) => (head.to_string(), false),
            None => (body.to_string(), true),
        };
        let name = if text.starts_with("---") || text.starts_with("+++") {
            text[..3].to_string()
        } else {
            text.split('(').next().unwrap_or("").to_string()
        };
        calls.push(Call {
            tid,
            start,
            took: took.unwrap_or(0.0),
            name,
            text,
            finished: finished || took.is_some(),
        });
    }
    calls.sort_by(|a, b| a.start.total_cmp(&b.start));
    calls
}

/// `body <0.000123>` into the body and the seconds.
fn split_took(body: &str) -> (&str, Option<f64>) {
    if let Some(open) = body.rfind(" <")
        && body.ends_with('>')
        && let Ok(secs) = body[open + 2..body.len() - 1].parse::<f64>()
    {
        return (&body[..open], Some(secs));
    }
    (body, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_an_interrupted_call_and_keeps_the_order_of_beginnings() {
        let text = "\
10  100.000100 futex(0x7f0, FUTEX_WAIT_PRIVATE, 2, NULL <unfinished ...>
11  100.000200 recvfrom(4, \"hi\\n\", 65536, 0, NULL, NULL) = 3 <0.000010>
10  100.000900 <... futex resumed>) = 0 <0.000800>
11  100.001000 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED} ---
11  100.002000 +++ exited with 0 +++
";
        let calls = parse(text);
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[0].name, "futex");
        assert_eq!(
            calls[0].text,
            "futex(0x7f0, FUTEX_WAIT_PRIVATE, 2, NULL) = 0"
        );
        assert!(calls[0].finished);
        assert!((calls[0].took - 0.0008).abs() < 1e-9);
        assert_eq!(calls[1].name, "recvfrom");
        assert_eq!(calls[1].tid, 11);
        assert!((calls[1].took - 0.00001).abs() < 1e-9);
        assert_eq!(calls[2].name, "---");
        assert_eq!(calls[3].name, "+++");
    }

    #[test]
    fn a_call_never_resumed_stays_unfinished() {
        let calls = parse("7  5.5 accept4(3, <unfinished ...>\n");
        assert_eq!(calls.len(), 1);
        assert!(!calls[0].finished);
        assert_eq!(calls[0].text, "accept4(3,");
    }
}
