//! A trace cut to its window, abridged (no buffer contents, no addresses
//! or ports that change from run to run) and annotated with each call's
//! phase; then written as README blocks and as the timeline.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::bail;

use crate::Target;
use crate::client::{BATCH, STEP_NAMES};
use crate::strace::{Call, Trace};

/// A wait that took longer than this blocked: the process slept in it.
/// The client pauses 10 ms before each step, so a wait that slept until
/// the client acted takes milliseconds; a call that did not sleep takes
/// microseconds, or a few hundred under strace.
const BLOCKED: f64 = 1e-3;
/// How long after the last reply the calls that begin are still shown:
/// the server's way back to its wait, which it is still in when stopped.
const TRAIL: f64 = 5e-3;
/// strace's clock for a call's return can be a little off the client's
/// for its step: a long wait that ended within this of a step's start was
/// ended by it.
const SLACK: f64 = 1e-3;
/// The longest run of calls folded when it repeats.
const FOLD_MAX: usize = 4;

const BEGIN: &str = "<!-- trace:begin -->";
const END: &str = "<!-- trace:end -->";

/// What a call does for the request, in the articles' two phases (waiting
/// for data, copying it) and what is neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for readiness, a completion, a client or a signal.
    Wait,
    /// A read that itself waited for the data, then copied it.
    WaitCopyIn,
    CopyIn,
    CopyOut,
    /// Tried, and nothing was there (`EAGAIN`).
    Try,
    Bookkeeping,
}

impl Phase {
    fn label(self, blocked: bool) -> &'static str {
        match (self, blocked) {
            (Phase::Wait, true) => "wait, blocked",
            (Phase::Wait, false) => "wait, ready",
            (Phase::WaitCopyIn, _) => "wait + copy in",
            (Phase::CopyIn, _) => "copy in",
            (Phase::CopyOut, _) => "copy out",
            (Phase::Try, _) => "try: EAGAIN",
            (Phase::Bookkeeping, _) => "bookkeeping",
        }
    }
}

/// One line of a shown trace.
#[derive(Debug, Clone)]
pub struct Line {
    /// The client's step it belongs to: 0 connect, 1 one request, 2 the
    /// batch. A wait that blocked across a step's start belongs to the
    /// step that ended it.
    pub step: usize,
    /// Microseconds from the step's start to the call's start (below zero
    /// for a wait already under way when the client acted).
    pub at_us: f64,
    pub took_us: f64,
    /// `main`, `thread 1`, `child 1`.
    pub who: String,
    pub name: String,
    pub text: String,
    pub phase: Phase,
    pub blocked: bool,
    /// The call had not returned by just after the last reply.
    pub unfinished: bool,
    /// This line stands for the `len` lines before it, repeated `times`
    /// more times.
    pub fold: Option<(usize, usize)>,
}

/// A trace as shown: its lines, and what the window around them held.
pub struct Shown {
    pub lines: Vec<Line>,
    /// Microseconds from each step's start to the return of its last call
    /// that returned before the next step (`EAGAIN` tries not counted).
    pub step_us: [f64; 3],
    /// Calls made while the server was idle, the 0.75 s before the client
    /// came (from its ready line on).
    pub idle_calls: usize,
}

/// What a descriptor is, from the call that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fd {
    Socket,
    Connection,
    Signalfd,
    Internal,
}

/// The descriptors the server has made so far, read off its calls in order.
#[derive(Default)]
struct Descriptors {
    kind: HashMap<i64, Fd>,
    nonblocking: HashMap<i64, bool>,
}

impl Descriptors {
    fn update(&mut self, c: &Call) {
        let made = result(&c.text)
            .and_then(|r| r.parse::<i64>().ok())
            .filter(|&fd| fd >= 0);
        let kind = match c.name.as_str() {
            "socket" => Fd::Socket,
            "accept" | "accept4" => Fd::Connection,
            "signalfd" | "signalfd4" => Fd::Signalfd,
            "epoll_create" | "epoll_create1" | "io_uring_setup" | "eventfd2" | "timerfd_create" => {
                Fd::Internal
            }
            "socketpair" | "pipe" | "pipe2" => {
                // The pair is in the array argument: `[5, 6]`.
                if let Some(pair) = c.text.split_once('[').and_then(|(_, r)| r.split_once(']')) {
                    for fd in pair.0.split(',').filter_map(|f| f.trim().parse().ok()) {
                        self.kind.insert(fd, Fd::Internal);
                    }
                }
                return;
            }
            "ioctl" if c.text.contains("FIONBIO") => {
                if let Some(fd) = first_fd(&c.text) {
                    self.nonblocking.insert(fd, c.text.contains("[1]"));
                }
                return;
            }
            "fcntl" if c.text.contains("F_SETFL") => {
                if let Some(fd) = first_fd(&c.text) {
                    let args = c.text.split(" = ").next().unwrap_or("");
                    self.nonblocking.insert(fd, args.contains("O_NONBLOCK"));
                }
                return;
            }
            _ => return,
        };
        if let Some(fd) = made {
            self.kind.insert(fd, kind);
            self.nonblocking
                .insert(fd, c.text.contains("SOCK_NONBLOCK"));
        }
    }

    fn kind(&self, c: &Call) -> Option<Fd> {
        first_fd(&c.text).and_then(|fd| self.kind.get(&fd).copied())
    }

    fn nonblocking(&self, c: &Call) -> bool {
        first_fd(&c.text).is_some_and(|fd| self.nonblocking.get(&fd) == Some(&true))
    }
}

impl Shown {
    pub fn from(trace: &Trace) -> Shown {
        let steps = &trace.steps;
        let who = names(trace);
        let mut pids: Vec<u32> = trace.calls.iter().map(|c| c.tid).collect();
        pids.extend(
            trace
                .calls
                .iter()
                .filter(|c| matches!(c.name.as_str(), "clone" | "clone3" | "fork" | "vfork"))
                .filter_map(|c| result(&c.text).and_then(|r| r.parse::<u32>().ok())),
        );
        let ready = trace
            .calls
            .iter()
            .find(|c| c.text.starts_with("write(1,"))
            .map_or(steps.connect, |c| c.start);
        let idle_calls = trace
            .calls
            .iter()
            .filter(|c| c.start > ready && c.start < steps.connect)
            .count();
        let mut fds = Descriptors::default();
        let mut lines = Vec::new();
        for c in &trace.calls {
            let phase = phase(c, &fds);
            fds.update(c);
            let returned = c.finished && c.end() <= steps.end + TRAIL + SLACK;
            // Begun by just after the last reply, and either since the connect or
            // in a wait the connect ended.
            let inside = if c.start > steps.end {
                c.start <= steps.end + TRAIL
            } else {
                c.start >= steps.connect || returned && c.end() >= steps.connect
            };
            if !inside || c.name == "+++" {
                continue;
            }
            // The step it started in; a call under way when a step began
            // (a wait the client's action ended), the step it returned in.
            let step_of = |t: f64| (0..3).rev().find(|&i| t >= steps.span(i).0).unwrap_or(0);
            let step = match returned {
                true if c.took >= SLACK => step_of(c.end() + SLACK),
                true => step_of(c.end()),
                false => step_of(c.start),
            };
            let waits = matches!(phase, Phase::Wait | Phase::WaitCopyIn);
            lines.push(Line {
                step,
                at_us: (c.start - steps.span(step).0) * 1e6,
                took_us: c.took * 1e6,
                who: who
                    .get(&c.tid)
                    .cloned()
                    .unwrap_or_else(|| c.tid.to_string()),
                name: c.name.clone(),
                text: if returned {
                    abridge(&c.text, &pids)
                } else {
                    still_waiting(&abridge(&c.text, &pids))
                },
                phase,
                blocked: waits && (c.took >= BLOCKED || !returned),
                unfinished: !returned,
                fold: None,
            });
        }
        // A step lasts until its last call returned; a call still waiting
        // at the next step does not stretch it, nor do the busy loop's
        // empty passes, which go on until the next step.
        let mut step_us = [0.0f64; 3];
        for l in lines
            .iter()
            .filter(|l| !l.unfinished && l.phase != Phase::Try)
        {
            let (from, to) = steps.span(l.step);
            let end = (l.at_us + l.took_us).min((to - from) * 1e6);
            step_us[l.step] = step_us[l.step].max(end);
        }
        Shown {
            lines: fold(lines),
            step_us,
            idle_calls,
        }
    }
}

/// A call that had not returned when the last reply came, without the
/// result it got later (or never, when the server was stopped in it).
fn still_waiting(text: &str) -> String {
    let call = text.rsplit_once(" = ").map_or(text, |(call, _)| call);
    let call = call.trim_end_matches(')').trim_end().trim_end_matches(',');
    format!("{call}, …) (still waiting)")
}

/// Names for the threads and processes: `main` for the server, then
/// `thread N` and `child N` in the order they were made.
fn names(trace: &Trace) -> HashMap<u32, String> {
    let mut names = HashMap::from([(trace.main, "main".to_string())]);
    let (mut threads, mut children) = (0, 0);
    for c in &trace.calls {
        if !matches!(c.name.as_str(), "clone" | "clone3" | "fork" | "vfork") {
            continue;
        }
        let Some(pid) = result(&c.text).and_then(|r| r.parse::<u32>().ok()) else {
            continue;
        };
        let name = if c.text.contains("CLONE_THREAD") {
            threads += 1;
            // A thread that names itself (async-io's helper) goes by it.
            trace
                .calls
                .iter()
                .find(|n| n.tid == pid && n.text.starts_with("prctl(PR_SET_NAME, \""))
                .and_then(|n| n.text.split('"').nth(1))
                .map_or_else(
                    || format!("thread {threads}"),
                    // `conn 127.0.0.1:…`: the port is cut, and changes.
                    |n| {
                        let n = if n.starts_with("conn ") { "conn" } else { n };
                        n.chars().take(9).collect()
                    },
                )
        } else {
            children += 1;
            format!("child {children}")
        };
        names.entry(pid).or_insert(name);
    }
    names
}

/// What a call returned: the text after its last ` = `.
fn result(text: &str) -> Option<&str> {
    let (_, r) = text.rsplit_once(" = ")?;
    Some(r.split_whitespace().next().unwrap_or(r))
}

/// The descriptor a call works on: its first argument.
fn first_fd(text: &str) -> Option<i64> {
    let args = text.split_once('(')?.1;
    args.split([',', ')']).next()?.trim().parse().ok()
}

/// The call's phase, from its name, its descriptor and how long it took.
/// A call on a non-blocking descriptor never waits, however long strace
/// made it take.
fn phase(c: &Call, fds: &Descriptors) -> Phase {
    let eagain = c.text.contains("EAGAIN");
    let may_block = !fds.nonblocking(c) && c.took >= BLOCKED;
    match c.name.as_str() {
        "select" | "pselect6" | "poll" | "ppoll" | "epoll_wait" | "epoll_pwait"
        | "epoll_pwait2" | "io_uring_enter" | "rt_sigtimedwait" | "rt_sigsuspend" | "pause"
        | "nanosleep" | "clock_nanosleep" => Phase::Wait,
        "futex" if c.text.contains("FUTEX_WAIT") => Phase::Wait,
        "accept" | "accept4" if eagain => Phase::Try,
        "accept" | "accept4" if may_block || !c.finished => Phase::Wait,
        "read" | "recvfrom" | "recvmsg" | "readv" => match fds.kind(c) {
            // Reading the signalfd is taking the readiness signals.
            Some(Fd::Signalfd) => Phase::Wait,
            Some(Fd::Internal) => Phase::Bookkeeping,
            _ if eagain => Phase::Try,
            _ if may_block || !c.finished => Phase::WaitCopyIn,
            _ => Phase::CopyIn,
        },
        "write" | "sendto" | "sendmsg" | "writev" => match fds.kind(c) {
            Some(Fd::Connection | Fd::Socket) if eagain => Phase::Try,
            Some(Fd::Connection | Fd::Socket) => Phase::CopyOut,
            _ => Phase::Bookkeeping,
        },
        _ => Phase::Bookkeeping,
    }
}

/// The call with what changes from run to run, or is data, elided: string
/// contents (but addresses), ports, pointers, pids, time left.
pub fn abridge(text: &str, pids: &[u32]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((i, ch)) = chars.next() {
        match ch {
            '"' => {
                // A string literal, with `\"` escapes, and `...` if cut.
                let mut literal = String::from('"');
                let mut escaped = false;
                for (_, c) in chars.by_ref() {
                    literal.push(c);
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                let rest = &text[i + literal.len()..];
                if rest.starts_with("...") {
                    for _ in 0..3 {
                        chars.next();
                    }
                }
                let keep = out.ends_with("inet_addr(") || out.ends_with("PR_SET_NAME, ");
                if keep || literal.len() <= 2 {
                    out.push_str(&literal);
                } else {
                    out.push_str("\"…\"");
                }
            }
            '0' if text[i..].starts_with("0x") => {
                let digits = text[i + 2..]
                    .chars()
                    .take_while(char::is_ascii_hexdigit)
                    .count();
                if digits >= 5 {
                    out.push_str("0x…");
                } else {
                    out.push_str(&text[i..i + 2 + digits]);
                }
                for _ in 0..1 + digits {
                    chars.next();
                }
            }
            c if c.is_ascii_digit() && !prev_is_word(&out) => {
                let digits: String = text[i..].chars().take_while(char::is_ascii_digit).collect();
                for _ in 1..digits.len() {
                    chars.next();
                }
                let is_pid = digits.parse::<u32>().is_ok_and(|n| pids.contains(&n));
                if out.ends_with("htons(") && digits != "0" {
                    out.push('…');
                } else if is_pid {
                    out.push_str("<pid>");
                } else {
                    out.push_str(&digits);
                }
            }
            _ => out.push(ch),
        }
    }
    // strace pads a short call to line its results up.
    while out.contains("  ") {
        out = out.replace("  ", " ");
    }
    // A futex's deadline is a point on the monotonic clock.
    if out.starts_with("futex(") {
        while let Some(at) = out.find("{tv_sec=") {
            let Some(close) = out[at..].find('}') else {
                break;
            };
            out.replace_range(at..at + close + 1, "{…}");
        }
    }
    // What pselect6 leaves of its timeout: different on every call.
    if let Some(at) = out.find("left {") {
        if let Some(close) = out[at..].find('}') {
            out.replace_range(at..at + close + 1, "left {…}");
        }
    }
    out
}

fn prev_is_word(out: &str) -> bool {
    out.chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Runs of up to [`FOLD_MAX`] calls repeated back to back (the busy
/// loop's empty passes) kept once, with a line saying how often.
fn fold(lines: Vec<Line>) -> Vec<Line> {
    let key = |l: &Line| (l.who.clone(), l.text.clone());
    let mut out: Vec<Line> = Vec::new();
    let mut i = 0;
    'next: while i < lines.len() {
        for len in 1..=FOLD_MAX {
            if out.len() < len {
                break;
            }
            let block: Vec<_> = out[out.len() - len..].iter().map(key).collect();
            let mut times = 0;
            while i + (times + 1) * len <= lines.len()
                && lines[i + times * len..i + (times + 1) * len]
                    .iter()
                    .map(key)
                    .eq(block.iter().cloned())
            {
                times += 1;
            }
            if times >= 2 {
                let last = &lines[i + times * len - 1];
                out.push(Line {
                    fold: Some((len, times)),
                    at_us: last.at_us,
                    took_us: 0.0,
                    ..last.clone()
                });
                i += times * len;
                continue 'next;
            }
        }
        out.push(lines[i].clone());
        i += 1;
    }
    out
}

fn duration(us: f64) -> String {
    let a = us.abs();
    let sign = if us < 0.0 { "-" } else { "" };
    if a < 1000.0 {
        format!("{sign}{a:.0} µs")
    } else if a < 1e6 {
        format!("{sign}{:.1} ms", a / 1e3)
    } else {
        format!("{sign}{:.2} s", a / 1e6)
    }
}

/// One mode's sub-section: heading, the annotated calls step by step, what
/// they add up to, and what to notice.
pub fn block(t: &Target, shown: &Shown) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "### {}\n", t.mode);
    let command: Vec<&str> = std::iter::once(t.krate)
        .chain(t.args.iter().copied())
        .collect();
    let _ = writeln!(md, "`{}`\n", command.join(" "));
    md.push_str("```text\n");
    let _ = writeln!(
        md,
        "{:>9} {:>9}  {:<9} {:<15} call",
        "at", "took", "who", "phase"
    );
    for (step, name) in STEP_NAMES.iter().enumerate() {
        let what = match (step, t.http) {
            (0, _) => (*name).to_string(),
            (1, true) => "it sends one keep-alive GET /".to_string(),
            (2, true) => format!("it sends {BATCH} GET / at once"),
            _ => (*name).to_string(),
        };
        let _ = writeln!(md, "── {what} ──");
        for l in shown.lines.iter().filter(|l| l.step == step) {
            if let Some((len, times)) = l.fold {
                let what = if len == 1 {
                    "the call above".to_string()
                } else {
                    format!("the {len} calls above")
                };
                let _ = writeln!(
                    md,
                    "{:>9} {:>9}  {:<9} {:<15} … {what}, {times} times more",
                    duration(l.at_us),
                    "",
                    l.who,
                    ""
                );
                continue;
            }
            let took = if l.unfinished {
                "…".to_string()
            } else {
                duration(l.took_us)
            };
            let _ = writeln!(
                md,
                "{:>9} {:>9}  {:<9} {:<15} {}",
                duration(l.at_us),
                took,
                l.who,
                l.phase.label(l.blocked),
                l.text
            );
        }
    }
    md.push_str("```\n\n");
    md.push_str(&summary(shown));
    let _ = writeln!(md, " {}\n", t.note);
    md
}

/// What the lines add up to, in two sentences.
fn summary(shown: &Shown) -> String {
    let calls: Vec<&Line> = shown.lines.iter().filter(|l| l.fold.is_none()).collect();
    let folded: usize = shown
        .lines
        .iter()
        .filter_map(|l| l.fold.map(|(len, times)| len * times))
        .sum();
    let count = |p: Phase| calls.iter().filter(|l| l.phase == p).count();
    let blocked = calls
        .iter()
        .filter(|l| l.blocked && l.phase == Phase::Wait)
        .count();
    let mut parts = vec![format!("{} waits ({blocked} blocked)", count(Phase::Wait))];
    for (phase, what) in [
        (Phase::WaitCopyIn, "reads that waited"),
        (Phase::CopyIn, "copies in"),
        (Phase::CopyOut, "copies out"),
        (Phase::Try, "tries that found nothing"),
        (Phase::Bookkeeping, "bookkeeping"),
    ] {
        let n = count(phase);
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let mut s = format!(
        "{} calls{}: {}.",
        calls.len() + folded,
        if folded > 0 {
            format!(" ({folded} of them folded)")
        } else {
            String::new()
        },
        parts.join(", ")
    );
    let _ = write!(
        s,
        " While idle, the {:.2} s before the client came, it made {} {}.",
        crate::strace::IDLE.as_secs_f64(),
        shown.idle_calls,
        if shown.idle_calls == 1 {
            "call"
        } else {
            "calls"
        }
    );
    s
}

/// The block of one crate, for its README.
pub fn crate_block(modes: &[String]) -> String {
    let mut md = String::from(
        "A client connects, pauses 10 ms, sends one request and reads the reply, pauses \
         again, then sends 16 requests in one write and reads the replies. Below is every \
         system call the server made meanwhile, and on its way back to its wait after the \
         last reply, as `strace -f -ttt -T` saw them, step by \
         step: `at` is when the call began, from the client's action (below zero: a wait \
         already under way), `took` how long it ran (strace slows every call), `phase` \
         what it did for the request. A wait that took over 1 ms is marked blocked \
         (one that slept until the client acted takes about 10 ms; one that did not, \
         microseconds). \
         String contents, pointers, ports and pids are elided, and `…` folds a run of \
         calls that repeats. Made by `cargo run --release -p bench --bin trace-models` \
         ([bench](../bench/README.md)); rerunning replaces this block.\n\n",
    );
    for m in modes {
        md.push_str(m);
    }
    md
}

/// Puts `text` between the README's trace markers, adding a section with
/// them at the end if it has none.
pub fn replace_block(readme: &Path, text: &str) -> anyhow::Result<()> {
    let old = fs::read_to_string(readme)?;
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{BEGIN}\n{text}{}", &old[..b], &old[e..])
        }
        (None, None) => format!(
            "{}\n## What one request asks of the kernel\n\n{BEGIN}\n{text}{END}\n",
            old.trim_end()
        ),
        _ => bail!("its trace markers are out of order"),
    };
    fs::write(readme, new)?;
    Ok(())
}

/// Fails unless `names` appear in the shown calls in this order.
pub fn check_order(shown: &Shown, names: &[&str]) -> anyhow::Result<()> {
    let mut want = names.iter().peekable();
    for l in &shown.lines {
        if want.peek().is_some_and(|&&n| n == l.name) {
            want.next();
        }
    }
    if let Some(missing) = want.next() {
        bail!(
            "the trace lacks {missing} after {:?}: the calls were {:?}",
            names,
            shown.lines.iter().map(|l| &l.name).collect::<Vec<_>>()
        );
    }
    eprintln!("trace check passed: {}", names.join(", then "));
    Ok(())
}

/// Every mode as a lane, and each of the client's steps as a panel: the
/// calls as boxes from the step's start, the waits that blocked dark.
pub fn timeline(path: &Path, traced: &[(&Target, Shown)]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let lanes = traced.len() as f64;
    let height = 110 + 30 * traced.len() as u32;
    let root = SVGBackend::new(path, (1500, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(70);
    title.draw(&Text::new(
        "Where each model waits: the server's system calls as a client connects, \
         sends one request, then 16 at once (strace; µs from each step)",
        (12, 8),
        ("sans-serif", 18),
    ))?;
    let legend = [
        ("wait, blocked", RGBColor(160, 30, 30)),
        ("wait, ready at once", RGBColor(240, 170, 160)),
        ("copy in", RGBColor(40, 110, 200)),
        ("copy out", RGBColor(40, 160, 80)),
        ("tried: EAGAIN", RGBColor(230, 190, 60)),
        ("bookkeeping", RGBColor(150, 150, 150)),
    ];
    for (k, (label, color)) in legend.iter().enumerate() {
        let x = 12 + 180 * k as i32;
        title.draw(&Rectangle::new([(x, 40), (x + 14, 54)], color.filled()))?;
        title.draw(&Text::new(*label, (x + 20, 40), ("sans-serif", 14)))?;
    }
    let (labels, panels) = body.split_horizontally(300);
    let width = panels.dim_in_pixel().0 / 3;
    let (first, rest) = panels.split_horizontally(width);
    let (second, third) = rest.split_horizontally(width);
    for (step, area) in [first, second, third].iter().enumerate() {
        let span = traced
            .iter()
            .map(|(_, s)| s.step_us[step])
            .fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(STEP_NAMES[step], ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(28)
            .build_cartesian_2d(0f64..span * 1.05, 0f64..lanes)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_labels(4)
            .x_desc("µs")
            .draw()?;
        for (i, (_, shown)) in traced.iter().enumerate() {
            let y = lanes - 1.0 - i as f64;
            for l in shown
                .lines
                .iter()
                .filter(|l| l.fold.is_none() && l.step == step)
            {
                let from = l.at_us.max(0.0);
                let to = if l.unfinished {
                    span * 1.05
                } else {
                    (l.at_us + l.took_us).min(span * 1.05)
                };
                let color = match (l.phase, l.blocked) {
                    (Phase::Wait, true) | (Phase::WaitCopyIn, _) => legend[0].1,
                    (Phase::Wait, false) => legend[1].1,
                    (Phase::CopyIn, _) => legend[2].1,
                    (Phase::CopyOut, _) => legend[3].1,
                    (Phase::Try, _) => legend[4].1,
                    (Phase::Bookkeeping, _) => legend[5].1,
                };
                // At least a hair wide, so that a quick call still shows.
                let to = to.max(from + span / 400.0);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(from, y + 0.2), (to, y + 0.8)],
                    color.filled(),
                )))?;
            }
        }
    }
    // The lane names, level with the panels' lanes.
    let (_, label_height) = labels.dim_in_pixel();
    let plot_top = 8 + 22;
    let plot_height = label_height as i32 - plot_top - 8 - 28;
    for (i, (t, _)) in traced.iter().enumerate() {
        let y = plot_top + (plot_height * (2 * i as i32 + 1)) / (2 * traced.len() as i32) - 7;
        labels.draw(&Text::new(
            format!("{}: {}", t.krate, t.mode),
            (8, y),
            ("sans-serif", 13),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abridge_elides_data_ports_pointers_and_pids() {
        let text = "accept4(3, {sa_family=AF_INET, sin_port=htons(59650), \
                    sin_addr=inet_addr(\"127.0.0.1\")}, [128 => 16], SOCK_CLOEXEC) = 4";
        assert_eq!(
            abridge(text, &[]),
            "accept4(3, {sa_family=AF_INET, sin_port=htons(…), \
             sin_addr=inet_addr(\"127.0.0.1\")}, [128 => 16], SOCK_CLOEXEC) = 4"
        );
        assert_eq!(
            abridge(
                "recvfrom(4, \"line 00\\nline 01\\n\"..., 65536, 0, NULL, NULL) = 128",
                &[]
            ),
            "recvfrom(4, \"…\", 65536, 0, NULL, NULL) = 128"
        );
        assert_eq!(
            abridge("futex(0x7feff2f1fa90, FUTEX_WAKE_PRIVATE, 1) = 1", &[]),
            "futex(0x…, FUTEX_WAKE_PRIVATE, 1) = 1"
        );
        assert_eq!(
            abridge(
                "clone3({flags=CLONE_VM, exit_signal=SIGCHLD}, 88) = 4242",
                &[4242]
            ),
            "clone3({flags=CLONE_VM, exit_signal=SIGCHLD}, 88) = <pid>"
        );
        assert_eq!(
            abridge(
                "pselect6(5, [3 4], [], NULL, {tv_sec=0, tv_nsec=500000000}, NULL) = 1 \
                 (in [4], left {tv_sec=0, tv_nsec=499997076})",
                &[]
            ),
            "pselect6(5, [3 4], [], NULL, {tv_sec=0, tv_nsec=500000000}, NULL) = 1 \
             (in [4], left {…})"
        );
    }

    fn line(text: &str) -> Line {
        Line {
            step: 0,
            at_us: 0.0,
            took_us: 1.0,
            who: "main".into(),
            name: text.split('(').next().unwrap().into(),
            text: text.into(),
            phase: Phase::Try,
            blocked: false,
            unfinished: false,
            fold: None,
        }
    }

    #[test]
    fn fold_keeps_a_repeated_pair_once_and_counts_the_rest() {
        let a = "accept4(3) = -1 EAGAIN";
        let b = "recvfrom(4) = -1 EAGAIN";
        let lines: Vec<Line> = [a, b, a, b, a, b, a, b, "recvfrom(4) = 12"]
            .into_iter()
            .map(line)
            .collect();
        let folded = fold(lines);
        let shape: Vec<_> = folded.iter().map(|l| (l.text.as_str(), l.fold)).collect();
        assert_eq!(
            shape,
            [
                (a, None),
                (b, None),
                (b, Some((2, 3))),
                ("recvfrom(4) = 12", None)
            ]
        );
    }

    #[test]
    fn the_order_check_finds_wait_then_receive_then_send() {
        let shown = Shown {
            lines: ["pselect6(4)", "accept4(3)", "recvfrom(4)", "sendto(4)"]
                .into_iter()
                .map(line)
                .collect(),
            step_us: [1.0; 3],
            idle_calls: 0,
        };
        assert!(check_order(&shown, &["pselect6", "recvfrom", "sendto"]).is_ok());
        assert!(check_order(&shown, &["sendto", "recvfrom"]).is_err());
    }
}
