//! What each model asks of the kernel: every server, in each of its modes,
//! traced with `strace` through one request and then a pipelined batch,
//! and the system calls written into its crate's README, with a timeline
//! of all of them in `bench/charts/timeline.svg`.
//!
//! It builds nothing: build first, then run from the workspace root.
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p bench --bin trace-models             # every model, READMEs rewritten
//! cargo run --release -p bench --bin trace-models -- --check  # select-echo only, nothing written
//! ```
//!
//! For each mode it starts the server under `strace -f -ttt -T` (every
//! thread and child, wall-clock timestamps, the time spent in each call),
//! waits until the server is idle (its ready line printed, 0.75 s passed,
//! no client connected), then connects one client, which sends one line
//! (an HTTP server: one keep-alive `GET /`), reads the reply, sends 16 at
//! once and reads those. The trace keeps the calls that began or ended
//! between the client's `connect` and its last reply.
//!
//! The files:
//!
//! - `strace.rs`: running a server under strace, and reading its output;
//! - `client.rs`: the client's side of the exchange;
//! - `render.rs`: a trace abridged and annotated, into README blocks and
//!   the timeline.

use std::process::ExitCode;

#[cfg(target_os = "linux")]
mod client;
#[cfg(target_os = "linux")]
mod render;
#[cfg(target_os = "linux")]
mod strace;

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    use clap::Parser;
    shared::cli::exit_with(linux::run(linux::Args::parse()))
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("error: trace-models runs strace: it needs Linux");
    ExitCode::FAILURE
}

/// One server in one mode, as traced: one sub-section of its README block.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The crate, whose README gets the block.
    pub krate: &'static str,
    /// The sub-section's title, and the timeline's lane.
    pub mode: &'static str,
    pub args: &'static [&'static str],
    pub http: bool,
    /// What the reader should notice, written from the traces this
    /// program made. What a run varies is said here too.
    pub note: &'static str,
}

/// Every mode of every server, in the README model table's order.
pub const TARGETS: &[Target] = &[
    Target {
        krate: "blocking-echo",
        mode: "serial",
        args: &["--mode", "serial"],
        http: false,
        note: "The one thread blocks inside `accept` until the client comes, then inside \
               `recvfrom` until its line does: waiting for data and copying it are one \
               call. While it serves this client, nobody else is accepted.",
    },
    Target {
        krate: "blocking-echo",
        mode: "thread",
        args: &["--mode", "thread"],
        http: false,
        note: "The main thread blocks in `accept` and hands the connection to a new \
               thread (`clone3`); that thread blocks inside `recvfrom` for each line. \
               The new thread's start-up (the mappings glibc makes for its stack and \
               heap) and how the two threads' calls interleave vary from run to run.",
    },
    Target {
        krate: "blocking-echo",
        mode: "pool",
        args: &["--mode", "pool", "--workers", "4"],
        http: false,
        note: "No thread is made per client: the accepting thread queues the connection \
               and wakes an idle worker (`futex`), which then blocks inside `recvfrom` \
               as a thread per connection does. Which worker takes it, and the futex \
               calls around the hand-over, vary from run to run.",
    },
    Target {
        krate: "blocking-echo",
        mode: "fork",
        args: &["--mode", "fork"],
        http: false,
        note: "The parent waits in `poll` on the listener and its self-pipe, accepts, \
               and forks; the child blocks inside `recvfrom` like any blocking \
               server. The child's pid, and how its calls interleave with the parent's, \
               vary from run to run.",
    },
    Target {
        krate: "nonblocking-echo",
        mode: "busy loop",
        args: &[],
        http: false,
        note: "Nothing ever blocks: every call returns at once, most with `EAGAIN`. Idle \
               here means no client, but the loop still spins; the empty passes are \
               folded, and how many there are varies with every run.",
    },
    Target {
        krate: "select-echo",
        mode: "select",
        args: &[],
        http: false,
        note: "The process blocks in `pselect6` only; the `recvfrom` and `sendto` after \
               it return at once, because the data is already there: the wait and the \
               copy are separate calls. The sets go to the kernel whole on every call.",
    },
    Target {
        krate: "select-echo",
        mode: "poll",
        args: &["--poll"],
        http: false,
        note: "The same loop as select's, waiting in `poll` on an array of descriptors \
               instead of bit sets; then copies that do not wait.",
    },
    Target {
        krate: "selectors-echo",
        mode: "selectors (epoll)",
        args: &[],
        http: false,
        note: "It blocks in `epoll_pwait`; interest lives in the kernel, so a connection \
               costs `epoll_ctl` calls (polling's one-shot mode re-arms after every \
               event) instead of a set handed over on every wait. Each wait also costs \
               a `read` of polling's wake-up descriptor and a `timerfd_settime`, \
               whether or not anything woke it.",
    },
    Target {
        krate: "epoll-http",
        mode: "level-triggered",
        args: &[],
        http: true,
        note: "It blocks in `epoll_wait`, then reads and writes without waiting; the \
               pipelined requests arrive in one read and their responses leave in one \
               write.",
    },
    Target {
        krate: "epoll-http",
        mode: "edge-triggered",
        args: &["--edge"],
        http: true,
        note: "As level-triggered, but after each edge the connection is read until \
               `EAGAIN`: one more `recvfrom` per wake-up, the price of never being told \
               twice.",
    },
    Target {
        krate: "sigio-echo",
        mode: "signal-driven",
        args: &[],
        http: false,
        note: "Readiness arrives as queued real-time signals, taken by reading the \
               `signalfd`: that read is the wait. The data is then copied by \
               `recvfrom`, which does not wait, until `EAGAIN`.",
    },
    Target {
        krate: "iocp-accept",
        mode: "io_uring multishot",
        args: &[],
        http: false,
        note: "A handful of `io_uring_enter` calls carry the whole exchange: the accept, \
               receives and sends are operations in the ring, not calls, and the copies \
               happen in the kernel before the completion is reported.",
    },
    Target {
        krate: "iocp-accept",
        mode: "io_uring single-shot (the IOCP shape)",
        args: &["--single-shot"],
        http: false,
        note: "Still no call per operation: each `io_uring_enter` submits the receives \
               and sends queued since the last and waits for completions.",
    },
    Target {
        krate: "coroutine-echo",
        mode: "coroutines",
        args: &[],
        http: false,
        note: "The calls are selectors-echo's (a wait in `epoll_pwait`, copies that do \
               not wait, `epoll_ctl` to re-arm the one-shot interest), and a `recvfrom` \
               of `EAGAIN` is where a task yields; the coroutines themselves are \
               invisible to the kernel. Who waits changes: at first `main` (block_on) \
               waits in `epoll_pwait` itself, but after 10 ms with no event async-io's \
               helper thread takes the reactor, and from then on it waits in \
               `epoll_pwait` and wakes `main`, parked on a futex, for every event. The \
               futexes between the two threads, and which of them makes the reactor's \
               `timerfd_settime` and `epoll_ctl` calls, vary from run to run.",
    },
];

#[cfg(target_os = "linux")]
mod linux {
    use std::path::PathBuf;

    use anyhow::{Context, bail};

    use crate::{TARGETS, Target, render, strace};

    #[derive(clap::Parser, Debug)]
    #[command(
        about = "Trace one request through every io-models server with strace; write the \
                 traces into each crate's README and bench/charts/timeline.svg"
    )]
    pub struct Args {
        /// Trace only select-echo's select loop, write nothing, and fail unless
        /// the trace holds the wait, then a receive, then a send (for CI)
        #[arg(long)]
        pub check: bool,
        /// Trace only the crates whose name starts with one of these,
        /// comma-separated (every mode of each); their READMEs are rewritten,
        /// the timeline is not
        #[arg(long, value_delimiter = ',')]
        pub only: Vec<String>,
        /// Where the server binaries are (default: beside this program)
        #[arg(long)]
        pub bin_dir: Option<PathBuf>,
    }

    pub fn run(args: Args) -> anyhow::Result<()> {
        if std::process::Command::new("strace")
            .arg("-V")
            .output()
            .is_err()
        {
            bail!("strace not found: install it (apt-get install strace)");
        }
        let bin_dir = match args.bin_dir {
            Some(dir) => dir,
            None => std::env::current_exe()?
                .parent()
                .context("no directory for this program")?
                .to_path_buf(),
        };
        let only: Vec<String> = if args.check {
            vec!["select-echo".into()]
        } else {
            args.only
        };
        let targets: Vec<&Target> = TARGETS
            .iter()
            .filter(|t| only.is_empty() || only.iter().any(|w| t.krate.starts_with(w.as_str())))
            .filter(|t| !args.check || t.mode == "select")
            .collect();
        if targets.is_empty() {
            bail!("--only {}: no crate starts with these", only.join(","));
        }
        let mut traced = Vec::new();
        for t in targets {
            let bin = bin_dir.join(t.krate);
            if !bin.exists() {
                bail!(
                    "{} not found: build first with `cargo build --release --workspace`",
                    bin.display()
                );
            }
            eprintln!("== {} {}", t.krate, t.mode);
            let trace = strace::trace(&bin, t).with_context(|| format!("tracing {}", t.mode))?;
            let shown = render::Shown::from(&trace);
            eprintln!(
                "   {} calls kept; steps of {:.0}, {:.0} and {:.0} µs",
                shown.lines.len(),
                shown.step_us[0],
                shown.step_us[1],
                shown.step_us[2]
            );
            traced.push((t, shown));
        }
        if args.check {
            let (t, shown) = &traced[0];
            print!("{}", render::block(t, shown));
            return render::check_order(shown, &["pselect6", "recvfrom", "sendto"]);
        }
        let root = bench::workspace_root(&bin_dir);
        let mut krates: Vec<&str> = traced.iter().map(|(t, _)| t.krate).collect();
        krates.dedup();
        for krate in krates {
            let modes: Vec<_> = traced.iter().filter(|(t, _)| t.krate == krate).collect();
            let blocks: Vec<String> = modes.iter().map(|(t, s)| render::block(t, s)).collect();
            let text = render::crate_block(&blocks);
            let readme = root.join(krate).join("README.md");
            render::replace_block(&readme, &text)
                .with_context(|| format!("writing {}", readme.display()))?;
            eprintln!("wrote {}", readme.display());
        }
        if only.is_empty() {
            let svg = root.join("bench/charts/timeline.svg");
            render::timeline(&svg, &traced).context("drawing the timeline")?;
            eprintln!("wrote {}", svg.display());
        }
        Ok(())
    }
}
