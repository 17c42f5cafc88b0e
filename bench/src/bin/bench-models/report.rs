//! BENCHMARKS.md and its charts, from one run's results.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use plotters::prelude::*;

use crate::model::{Env, Model};
use crate::results::{Point, Results, Step};

mod latency;

type All = [(Model, Results)];

/// Writes BENCHMARKS.md and the charts; `generator` is the generator's
/// own ceiling, measured against that model.
pub fn write(out: &Path, env: &Env, all: &All, generator: (&Model, &[Step])) -> anyhow::Result<()> {
    fs::create_dir_all(out.join("bench/charts"))?;
    charts(out, all)?;
    latency::chart(out, all)?;
    latency::carried_chart(out, all)?;
    let mut md = String::new();
    header(&mut md, env);
    grid_tables(&mut md, all);
    idle_table(&mut md, all);
    scale_table(&mut md, env, all);
    latency::section(&mut md, env, all, generator);
    cpu_table(&mut md, all);
    counts_tables(&mut md, env, all);
    memory_table(&mut md, all);
    cross_check(&mut md, env, all);
    claims(&mut md, env, all);
    fs::write(out.join("BENCHMARKS.md"), md)?;
    Ok(())
}

/// `--latency-only`: the latency section of the BENCHMARKS.md already in
/// `out` replaced by this run's (or added before "## CPU"), with a line
/// that says which run it comes from, and its chart redrawn.
pub fn splice_latency(
    out: &Path,
    env: &Env,
    all: &All,
    generator: (&Model, &[Step]),
) -> anyhow::Result<()> {
    fs::create_dir_all(out.join("bench/charts"))?;
    latency::chart(out, all)?;
    latency::carried_chart(out, all)?;
    let path = out.join("BENCHMARKS.md");
    let page = fs::read_to_string(&path)?;
    let mut section = String::new();
    latency::section(&mut section, env, all, generator);
    let note = format!(
        "\n*This section comes from a run of its own, `bench-models --latency-only \
         --latency-rounds {} --secs {}`, on the same machine as the rest of the page.*\n",
        env.latency_rounds, env.secs
    );
    let section = match section.find("\n\n") {
        Some(at) => format!("{}\n{note}{}", &section[..at], &section[at..]),
        None => section,
    };
    const HEADING: &str = "\n## Latency against offered load\n";
    let without = match page.find(HEADING) {
        Some(start) => {
            let end = page[start + HEADING.len()..]
                .find("\n## ")
                .map_or(page.len(), |e| start + HEADING.len() + e);
            format!("{}{}", &page[..start], &page[end..])
        }
        None => page,
    };
    let at = without.find("\n## CPU").unwrap_or(without.len());
    let page = format!("{}{}{}", &without[..at], section, &without[at..]);
    fs::write(path, page)?;
    Ok(())
}

fn header(md: &mut String, env: &Env) {
    let h = &env.host;
    let (cpu, cores, mem_kib, kernel) = (&h.cpu, h.cores, h.mem_kib, &h.kernel);
    let mode = if env.quick { " --quick" } else { "" };
    let _ = writeln!(
        md,
        "# Benchmarks\n\n\
         Every I/O model of this workspace, measured side by side in one run of\n\
         `bench-models`. Reproduce with:\n\n\
         ```sh\n\
         cargo build --release --workspace\n\
         cargo run --release -p bench --bin bench-models{mode}\n\
         ```\n\n\
         Machine: {cpu}, {cores} cores, {:.0} GiB, Linux {}. The load generator\n\
         (`loadgen`, one `mio` event loop, every reply checked byte for byte) and the\n\
         server share these cores, so absolute figures are this machine's; compare\n\
         models within the run. Each point is the median of 3 runs of {} s, each\n\
         after a short warm-up;\n\
         requests are 62-byte lines (the echo servers) or keep-alive `GET /`\n\
         (epoll-http), on loopback. selectors-echo's replies carry the article's\n\
         `_SB` suffix. The HTTP server does more work per request than the echo\n\
         servers, so its rows compare with each other, not with theirs.\n",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim(),
        env.secs,
    );
}

fn cell(p: &Option<Point>) -> String {
    match p {
        Some(p) => format!("{:.0} ({:.0} µs)", p.rps, p.p99_us),
        None => "—".into(),
    }
}

fn grid_tables(md: &mut String, all: &All) {
    let conns: Vec<usize> = all[0]
        .1
        .grid
        .iter()
        .filter(|((_, d), _)| *d == 1)
        .map(|((c, _), _)| *c)
        .collect();
    for depth in [1u32, 16] {
        let _ = writeln!(
            md,
            "\n## Throughput against connections, depth {depth}\n\n\
             Requests per second, and p99 latency in brackets, with every connection\n\
             active and {depth} request{} in flight on each. \"—\": more connections than the\n\
             model serves at once (a pool of 8 serves 8; the others wait).\n",
            if depth == 1 { "" } else { "s" }
        );
        let _ = write!(md, "| model |");
        for c in &conns {
            let _ = write!(md, " {c} |");
        }
        let _ = write!(md, "\n|---|");
        for _ in &conns {
            let _ = write!(md, "---:|");
        }
        md.push('\n');
        for (m, r) in all {
            let _ = write!(md, "| {} |", m.name);
            for ((_, d), p) in &r.grid {
                if *d == depth {
                    let _ = write!(md, " {} |", cell(p));
                }
            }
            md.push('\n');
        }
    }
    md.push_str("\n![Requests per second against connections](bench/charts/throughput.svg)\n");
}

fn idle_table(md: &mut String, all: &All) {
    let idles: Vec<usize> = all[0].1.idle.iter().map(|(i, _)| *i).collect();
    md.push_str(
        "\n## Latency against idle connections\n\n\
         10 active connections, one request in flight each, while more connections,\n\
         each having made one round trip, are held open and silent: up to the most\n\
         this machine lets one process hold (see the next section). p50 / p99 latency\n\
         in microseconds; the median of three interleaved rounds with none idle and at\n\
         the ceiling, one round between. select and poll hand the kernel every watched\n\
         descriptor on each call, and it checks them all; epoll and io_uring touch only\n\
         the ready ones. — : the model cannot hold that many (select: FD_SETSIZE; the\n\
         thread ceiling), or, for the pool, idle connections would hold its workers.\n\n| model |",
    );
    for i in &idles {
        let _ = write!(md, " {i} idle |");
    }
    md.push_str("\n|---|");
    for _ in &idles {
        md.push_str("---:|");
    }
    md.push('\n');
    for (m, r) in all {
        let _ = write!(md, "| {} |", m.name);
        for (_, p) in &r.idle {
            match p {
                Some(p) => {
                    let _ = write!(md, " {:.0} / {:.0} |", p.p50_us, p.p99_us);
                }
                None => md.push_str(" — |"),
            }
        }
        md.push('\n');
    }
    md.push_str("\n![p99 latency against idle connections](bench/charts/p99-idle.svg)\n");
}

/// The scale sweep at its top count: what each model held, how fast, at
/// what cost in memory (the server's and the kernel's), and the burst.
fn scale_table(md: &mut String, env: &Env, all: &All) {
    let Some(top) = all
        .iter()
        .filter_map(|(_, r)| r.scale.last())
        .map(|p| p.asked)
        .max()
    else {
        return;
    };
    let hard = env.host.nofile_hard;
    if top < env.host.scale_ceiling {
        let _ = write!(
            md,
            "\n## Scale: {top} idle connections (a reduced sweep)\n\n\
             A quick run holds {top} idle connections beside 10 active ones, in one\n\
             model of each family; a full run goes to the descriptor ceiling.\n\n"
        );
    } else {
        let _ = write!(md, "\n## At the ceiling: {top} idle connections\n\n");
    }
    let _ = write!(
        md,
        "Every process here may hold at most {hard} descriptors (a hard `RLIMIT_NOFILE`\n\
         that cannot be raised on this machine), and a server and loadgen each need one\n\
         per connection: so {top} idle connections beside 10 active ones is the most\n\
         one server can be asked to hold. No other limit was near: loadgen spreads the\n\
         connections over loopback source addresses (127.0.0.1, .2, …, each with its own\n\
         ephemeral ports), keeps 256 connects in flight, below every server's backlog\n\
         of 1024, and no sysctl was changed. Past this count is projection:\n\
         docs/scale.md.\n\n\
         *held*: idle connections that made their round trip and were kept; *opened/s*:\n\
         how fast they were opened and answered; p99 beside none idle and beside the\n\
         crowd, and their ratio; memory per connection, the server's (RSS; a forking\n\
         model's PSS) and the kernel's (slab objects in use, kernel stacks and page\n\
         tables: both ends of every loopback connection; docs/scale.md takes the\n\
         client's end off); server CPU over one second with the crowd silent; the burst, in\n\
         which every idle connection sent a line at once (replies right, and the time\n\
         to the last).\n\n\
         | model | held | opened/s | p99 µs: none idle → crowd | user KiB/conn | kernel KiB/conn | idle CPU s | burst |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (m, r) in all {
        let (Some(first), Some(last)) = (r.scale.first(), r.scale.last()) else {
            let _ = writeln!(
                md,
                "| {} | — | — | — | — | — | — | not run: idle clients would hold its workers |",
                m.name
            );
            continue;
        };
        let burst = match last.burst {
            Some((right, wrong, secs)) => {
                let mut b = format!("{right} right, {wrong} wrong, {:.0} ms", secs * 1000.0);
                if let Some(re) = last.rearmed {
                    let _ = write!(b, "; {re} ENOBUFS re-arms");
                }
                b
            }
            None => "—".into(),
        };
        let held = match &last.stopped {
            Some(why) => format!("{} — stopped: {why}", last.held),
            None => last.held.to_string(),
        };
        // Below the noise of the machine's other slab traffic (a model that
        // stopped at a thousand): nothing to show.
        let kernel = if last.kernel_kib > 0.0 {
            format!("{:.2}", last.kernel_kib)
        } else {
            "—".into()
        };
        let _ = writeln!(
            md,
            "| {} | {held} | {:.0} | {:.0} → {:.0} ({:.2}×) | {:.2} | {kernel} | {:.3} | {burst}{} |",
            m.name,
            last.open_rate,
            first.active.p99_us,
            last.active.p99_us,
            last.active.p99_us / first.active.p99_us.max(1.0),
            last.user_kib,
            last.idle_cpu,
            if last.alive {
                ""
            } else {
                "; no answer to a newcomer afterwards"
            },
        );
    }
    md.push_str(
        "\n![Memory per connection at the ceiling, the server's and the kernel's](bench/charts/memory-at-scale.svg)\n",
    );
}

/// The grid point at 100 connections (or the most the model serves), depth 1.
fn busy_point(r: &Results) -> Option<(usize, Point)> {
    r.grid
        .iter()
        .filter(|((c, d), _)| *d == 1 && *c <= 100)
        .filter_map(|((c, _), p)| p.map(|p| (*c, p)))
        .next_back()
}

fn cpu_table(md: &mut String, all: &All) {
    md.push_str(
        "\n## CPU\n\n\
         Server CPU seconds per 100 000 requests at 100 connections, depth 1 (a pool:\n\
         8), split into user and kernel time: on loopback most of an echo server's CPU\n\
         is the kernel's TCP work. Then the CPU the server used while 10 connections\n\
         sat idle.\n\n\
         | model | user | kernel | idle: CPU seconds |\n|---|---:|---:|---:|\n",
    );
    for (m, r) in all {
        match busy_point(r) {
            Some((_, p)) => {
                let _ = writeln!(
                    md,
                    "| {} | {:.3} | {:.3} | {:.2} over {:.1} s |",
                    m.name, p.cpu_user, p.cpu_sys, r.idle_cpu, r.idle_window
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "| {} | — | — | {:.2} over {:.1} s |",
                    m.name, r.idle_cpu, r.idle_window
                );
            }
        }
    }
}

fn counts_tables(md: &mut String, env: &Env, all: &All) {
    md.push_str(
        "\n## System calls and instructions per request\n\n\
         10 connections: a run of 8 000 requests at depth 1 (64 000 at depth 16)\n\
         less a run of one round per connection, so that start-up and shut-down\n\
         cancel, the median of three such pairs: `strace -f -c` for system calls, `valgrind\n\
         --tool=callgrind` for user-space instructions. Most repeat to within a few\n\
         percent whatever else the machine is doing. Where a model's calls depend on\n\
         timing they do not: at depth 1, the reads that find nothing (the busy loop,\n\
         edge-triggered epoll, signal-driven I/O) and how many requests one wait\n\
         brings (io_uring) change from run to run, and so do the busy loop's\n\
         instructions, which are mostly its empty passes.\n\n",
    );
    if env.quick || all.iter().all(|(_, r)| r.counts.is_empty()) {
        md.push_str("(Not measured in this run: `--quick`, or strace/valgrind missing.)\n");
        return;
    }
    md.push_str(
        "| model | instructions, depth 1 | depth 16 | system calls, depth 1 | depth 16 | depth 1 by name |\n\
         |---|---:|---:|---:|---:|---|\n",
    );
    for (m, r) in all {
        let get = |d: u32| r.counts.iter().find(|c| c.depth == d);
        let instr = |d: u32| {
            get(d)
                .and_then(|c| c.instructions)
                .map_or("?".into(), |i| format!("{i:.0}"))
        };
        let sys = |d: u32| {
            get(d)
                .and_then(|c| c.syscalls.as_ref())
                .map_or("?".into(), |(t, _)| format!("{:.2}", t.max(0.0)))
        };
        let names = get(1)
            .and_then(|c| c.syscalls.as_ref())
            .map(|(_, names)| {
                names
                    .iter()
                    .map(|(n, c)| format!("{n} {c:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {names} |",
            m.name,
            instr(1),
            instr(16),
            sys(1),
            sys(16)
        );
    }
}

fn memory_table(md: &mut String, all: &All) {
    md.push_str(
        "\n## Memory per idle connection\n\n\
         Server memory before and after opening idle connections (1000 in a full run),\n\
         divided by their number: once for connections that never spoke, once for\n\
         connections that each made one round trip first. Resident memory (RSS), but\n\
         for the process per connection: there it is the process tree's proportional\n\
         set size (PSS), since RSS would count the pages every child shares with the\n\
         parent once per child. A thread costs its stack's touched pages and the\n\
         kernel's thread structures, a process its own page tables and the pages it\n\
         writes. io_uring in IOCP's shape keeps a receive posted on every connection,\n\
         into 8 KiB of its line buffer, whether the connection speaks or not; the\n\
         multishot loop takes a buffer from its ring only when data arrives, and gives\n\
         it back once its lines are framed. The readiness servers, the\n\
         signal-driven one and the coroutines read into one buffer their loop owns and\n\
         keep per connection only a line still arriving, so a connection that spoke\n\
         costs them no more than a silent one. The HTTP server keeps only a request\n\
         still arriving.\n\n\
         | model | KiB per silent connection | KiB per connection after one round trip |\n|---|---:|---:|\n",
    );
    for (m, r) in all {
        let spoken = r.rss_spoken_kib.map_or_else(
            || "— (a pool answers only its workers' clients)".to_string(),
            |k| format!("{k:.1}"),
        );
        let _ = writeln!(md, "| {} | {:.1} | {spoken} |", m.name, r.rss_per_conn_kib);
    }
    md.push_str("\n![RSS per idle connection](bench/charts/rss-per-connection.svg)\n");
}

fn cross_check(md: &mut String, env: &Env, all: &All) {
    md.push_str("\n## Cross-check with a tool nobody here wrote\n\n");
    if env.quick {
        md.push_str("(Not run with `--quick`.)\n");
        return;
    }
    md.push_str(
        "wrk (`wrk -t1 -c100 --latency`) and loadgen (100 connections, depth 1) against\n\
         one HTTP server, alternating, 3 runs of each, medians:\n\n\
         | model | loadgen requests/s | wrk requests/s | loadgen p99 | wrk p99 |\n|---|---:|---:|---:|---:|\n",
    );
    let mut far = Vec::new();
    for (m, r) in all {
        let Some((w_rps, w_p99, p)) = r.wrk else {
            continue;
        };
        if (w_rps / p.rps - 1.0).abs() > 0.2 {
            far.push(m.name);
        }
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} ({:+.0}%) | {:.2} ms | {:.2} ms |",
            m.name,
            p.rps,
            w_rps,
            (w_rps / p.rps - 1.0) * 100.0,
            p.p99_us / 1000.0,
            w_p99
        );
    }
    if far.is_empty() {
        md.push_str("\nThe two tools agree within 20%.\n");
    } else {
        let _ = writeln!(
            md,
            "\nThe tools differ by more than 20% for {}. Both drive the server from one\n\
             thread on the second of two cores, so each is bounded by its own cost per\n\
             request as much as by the server's: wrk parses each response and runs its\n\
             Lua hooks, loadgen parses each response with httparse.",
            far.join(", ")
        );
    }
    md.push_str(
        "\nNo third-party echo load tool could be had on this machine: tcpkali is not in\n\
         its Debian's package lists and rust_echo_bench is not on crates.io, the only\n\
         registries it reaches. The echo servers' figures rest on loadgen alone.\n",
    );
}

fn find<'a>(all: &'a All, bin: &str, args: &[&str]) -> Option<&'a Results> {
    all.iter()
        .find(|(m, _)| m.bin == bin && m.args == args)
        .map(|(_, r)| r)
}

fn at(r: &Results, conns: usize, depth: u32) -> Option<Point> {
    r.grid
        .iter()
        .find(|((c, d), _)| *c == conns && *d == depth)
        .and_then(|(_, p)| *p)
}

fn idle_growth(r: &Results) -> Option<(usize, f64, f64)> {
    let first = r.idle.first()?.1?;
    let (n, last) = r.idle.iter().rev().find_map(|(n, p)| p.map(|p| (*n, p)))?;
    Some((n, first.p50_us, last.p50_us))
}

fn claims(md: &mut String, env: &Env, all: &All) {
    md.push_str("\n## The articles' claims, against these numbers\n");
    let thread = find(all, "blocking-echo", &["--mode", "thread"]);
    // The multiplexing servers that speak the same protocol as the blocking one.
    let reactors: Vec<(&str, &Results)> = all
        .iter()
        .filter(|(m, _)| matches!(m.bin, "select-echo" | "selectors-echo" | "iocp-accept"))
        .map(|(m, r)| (m.name, r))
        .collect();

    // 1. Blocking is best for a single connection (001 §4, 000).
    if let Some(t) = thread.and_then(|t| at(t, 1, 1)) {
        let best = reactors
            .iter()
            .filter_map(|(n, r)| at(r, 1, 1).map(|p| (*n, p)))
            .max_by(|a, b| a.1.rps.total_cmp(&b.1.rps));
        if let Some((name, b)) = best {
            let depth1_calls = |bin: &str, args: &[&str]| {
                find(all, bin, args)?
                    .counts
                    .iter()
                    .find(|c| c.depth == 1)?
                    .syscalls
                    .as_ref()
                    .map(|(t, _)| *t)
            };
            let counted = match (
                depth1_calls("blocking-echo", &["--mode", "thread"]),
                depth1_calls("select-echo", &["--max-conns", "1010"]),
            ) {
                (Some(t), Some(s)) => format!(
                    " (the counts below: {t:.2} system calls per request blocking, {s:.2} with\n\
                     select)"
                ),
                _ => String::new(),
            };
            let verdict = if t.rps >= b.rps * 0.95 {
                "Borne out"
            } else {
                "Not borne out here"
            };
            let _ = writeln!(
                md,
                "\n**\"With one connection, blocking I/O is the most efficient; multiplexing only\n\
                 pays with many\"** (articles 000 and 001 §4). {verdict}: with one connection,\n\
                 a thread blocking in `read` served {:.0} requests/s (p50 {:.0} µs); the\n\
                 fastest multiplexing server, {name}, {:.0} (p50 {:.0} µs), {:.2}× the thread.\n\
                 With one client, a multiplexing server adds a wait to the read and the\n\
                 write{counted}; with many, it is the one of the two that serves them\n\
                 without a thread each.",
                t.rps,
                t.p50_us,
                b.rps,
                b.p50_us,
                b.rps / t.rps
            );
        }
    }

    // 2. Non-blocking polling burns a core (001 §3).
    if let Some(nb) = find(all, "nonblocking-echo", &[]) {
        let others = all
            .iter()
            .filter(|(m, _)| m.bin != "nonblocking-echo")
            .map(|(_, r)| r.idle_cpu / r.idle_window)
            .fold(0.0, f64::max);
        let share = nb.idle_cpu / nb.idle_window;
        let verdict = if share > 0.5 && others < 0.05 {
            "Borne out"
        } else {
            "Not clearly borne out"
        };
        let _ = writeln!(
            md,
            "\n**\"Calling recv() in a loop drives the CPU up\"** (001 §3). {verdict}: with\n\
             10 idle clients the busy loop used {:.0}% of a core; every other model at\n\
             most {:.1}%.",
            share * 100.0,
            others * 100.0
        );
    }

    // 3. select and poll slow as their sets grow (select also stops at
    //    FD_SETSIZE); epoll does not.
    let sel = find(all, "select-echo", &["--max-conns", "1010"]).and_then(idle_growth);
    let pol = find(all, "select-echo", &["--poll"]).and_then(idle_growth);
    let epo = find(all, "selectors-echo", &[]).and_then(idle_growth);
    if let (Some((n, s0, s1)), Some((pn, p0, p1)), Some((en, e0, e1))) = (sel, pol, epo) {
        let (sr, pr, er) = (s1 / s0, p1 / p0, e1 / e0);
        let verdict = if sr > er * 1.2 && pr > er * 1.2 {
            "Borne out"
        } else {
            "Not borne out at this scale"
        };
        let _ = writeln!(
            md,
            "\n**\"select and poll get slower as they watch more sockets; epoll does not\"**\n\
             (001 §7, 000). {verdict}: with {n} idle connections beside 10 active ones,\n\
             select's median latency went from {s0:.0} to {s1:.0} µs ({sr:.2}×), poll's with\n\
             {pn} idle from {p0:.0} to {p1:.0} µs ({pr:.2}×); epoll's (through selectors)\n\
             with {en} idle from {e0:.0} to {e1:.0} µs ({er:.2}×). Every select and poll call\n\
             hands the kernel every watched socket, and the kernel checks each one;\n\
             epoll keeps the interest list in the kernel and returns only the ready\n\
             ones. select's other limit is a wall, not a slope: it cannot watch\n\
             descriptor 1024 or above (FD_SETSIZE), and select-echo refuses clients\n\
             past it (its tests: 1100 clients, 1018 served and the rest told\n\
             `ERR server full`, with 6 descriptors held before). poll has no such wall\n\
             (its tests: 5000 clients at once, all served).",
        );
    }

    // 4. Threads cost memory (001 §2).
    if let (Some(t), Some(s)) = (thread, find(all, "selectors-echo", &[])) {
        let ratio = t.rss_per_conn_kib / s.rss_per_conn_kib.max(0.1);
        let verdict = if ratio > 2.0 {
            "Borne out"
        } else {
            "Not clearly borne out"
        };
        let _ = writeln!(
            md,
            "\n**\"A thread per connection takes a lot of the system's resources with\n\
             hundreds or thousands of clients\"** (001 §2). {verdict}: each idle connection\n\
             cost the thread-per-connection server {:.1} KiB of resident memory (a stack and\n\
             the thread's bookkeeping) against {:.1} KiB for the event loop, {ratio:.1}×.\n\
             Virtual memory is larger still: each thread reserves its full stack.",
            t.rss_per_conn_kib, s.rss_per_conn_kib
        );
    }

    // 4b. A process costs more than a thread (004).
    if let (Some(t), Some(f)) = (thread, find(all, "blocking-echo", &["--mode", "fork"])) {
        let mem = f.rss_per_conn_kib / t.rss_per_conn_kib.max(0.1);
        let cpu = |r: &Results| busy_point(r).map(|(_, p)| p.cpu_user + p.cpu_sys);
        let at1k = |r: &Results| at(r, 1000, 1).map(|p| p.rps);
        let verdict = if mem > 1.5 {
            "Borne out"
        } else {
            "Not clearly borne out"
        };
        let cpu_text = match (cpu(t), cpu(f)) {
            (Some(ct), Some(cf)) => format!(
                " Serving 100 connections, the processes used {cf:.2} s of CPU per 100 000\n\
                 requests against the threads' {ct:.2} s ({:.2}×).",
                cf / ct.max(1e-9)
            ),
            _ => String::new(),
        };
        let rps_text = match (at1k(t), at1k(f)) {
            (Some(rt), Some(rf)) => {
                format!(" With 1000 connections they answered {rf:.0} requests/s against {rt:.0}.")
            }
            _ => String::new(),
        };
        let _ = writeln!(
            md,
            "\n**\"A process per connection has the threads' problems, with more memory and\n\
             costlier switches\"** (004). {verdict}: each idle connection cost the process\n\
             per connection {:.1} KiB (PSS of the process tree) against {:.1} KiB (RSS) for a\n\
             thread, {mem:.1}×.{cpu_text}{rps_text} A switch between processes also\n\
             changes address space; between threads of one process it does not.",
            f.rss_per_conn_kib, t.rss_per_conn_kib
        );
    }

    // 5. Completion-based I/O needs fewer calls (001 §5, 004), and so
    //    less CPU per request.
    if !env.quick {
        let calls = |bin: &str, args: &[&str]| {
            find(all, bin, args)?
                .counts
                .iter()
                .find(|c| c.depth == 1)?
                .syscalls
                .as_ref()
                .map(|(t, _)| *t)
        };
        let cpu = |bin: &str, args: &[&str]| {
            let p = at(find(all, bin, args)?, 100, 1)?;
            Some(p.cpu_user + p.cpu_sys)
        };
        let select = ["--max-conns", "1010"];
        if let (Some(u), Some(one), Some(s)) = (
            calls("iocp-accept", &[]),
            calls("iocp-accept", &["--single-shot"]),
            calls("select-echo", &select),
        ) {
            let cpu_text = match (
                cpu("iocp-accept", &[]),
                cpu("iocp-accept", &["--single-shot"]),
                cpu("select-echo", &select),
            ) {
                (Some(cu), Some(c1), Some(cs)) => format!(
                    " In CPU, at 100 connections: {cu:.2} s per 100 000 requests multishot,\n\
                     {c1:.2} s single-shot, {cs:.2} s for select: select's CPU per request is\n\
                     {:.2}× multishot's (above 1 means io_uring is cheaper).",
                    cs / cu.max(1e-9)
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                md,
                "\n**\"In the asynchronous model the process hands over the whole operation and\n\
                 is told when it is done\"** (001 §5, 004). What that saves shows in the\n\
                 counts: io_uring made {u:.2} system calls per request at depth 1 with\n\
                 multishot operations, {one:.2} in IOCP's one-operation-one-completion shape,\n\
                 select {s:.2}. One `io_uring_enter` submits every new operation and reaps every\n\
                 completion, where a readiness server pays a `read` and a `write` per\n\
                 connection and batch on top of its wait.{cpu_text}"
            );
        }
    }

    // 6. Signal-driven I/O: a signal per readiness event (001, 002).
    if let (Some(sig), Some(sel)) = (
        find(all, "sigio-echo", &[]),
        find(all, "selectors-echo", &[]),
    ) {
        let depth1 = |r: &Results| r.counts.iter().find(|c| c.depth == 1)?.syscalls.clone();
        if let (Some((st, names)), Some((et, _))) = (depth1(sig), depth1(sel)) {
            let per = |name: &str| names.iter().find(|(n, _)| n == name).map(|(_, c)| *c);
            let reads = per("recvfrom").unwrap_or(0.0);
            let waits = per("read").map_or("under 0.01".into(), |w| format!("{w:.2}"));
            let extra = if reads > 1.05 {
                format!("{reads:.2} `recvfrom` per request where one would do")
            } else {
                format!(
                    "reads that would block (here {reads:.2} `recvfrom` per request in all; \
                     how many find nothing depends on timing, and this run's pairs differed)"
                )
            };
            let _ = writeln!(
                md,
                "\n**\"Signal-driven I/O: the kernel signals the process when a socket is ready\"**\n\
                 (Stevens' fourth model; 001 and 002 name it and set it aside as rarely used).\n\
                 Each readiness event is one queued real-time signal carrying its descriptor,\n\
                 and the server takes them from a `signalfd`, up to 64 per `read`: {st:.2}\n\
                 system calls per request at depth 1, against {et:.2} for epoll through\n\
                 selectors. The waits hardly count ({waits} `read`s of the signalfd per\n\
                 request): signals pile up faster than one connection's request is answered,\n\
                 so each `read` brings a batch. A signal per event shows instead in the\n\
                 socket reads, {extra}: a signal\n\
                 queued for data that an earlier read already took leads to a read that\n\
                 would block. The flaw the counts do not show: the queue is bounded, and\n\
                 when it overflows the kernel sends plain SIGIO with no descriptor, and the\n\
                 server must check every connection. Its test overflows a queue of 4 with\n\
                 200 clients and every reply still arrives; with thousands of sockets behind\n\
                 one queue, that full scan is select's cost again."
            );
        }
    }

    // 7. Coroutines read like threads and cost like the event loop (002).
    if let (Some(co), Some(t), Some(sel)) = (
        find(all, "coroutine-echo", &[]),
        thread,
        find(all, "selectors-echo", &[]),
    ) {
        let instr = |r: &Results, d: u32| r.counts.iter().find(|c| c.depth == d)?.instructions;
        let mem = |r: &Results| {
            format!(
                "{:.1} KiB silent, {}",
                r.rss_per_conn_kib,
                r.rss_spoken_kib
                    .map_or("—".into(), |k| format!("{k:.1} KiB after a round trip"))
            )
        };
        let counted = match (instr(co, 1), instr(sel, 1), instr(t, 1)) {
            (Some(c), Some(s), Some(th)) => format!(
                " At depth 1 a request cost the coroutine server {c:.0} user-space\n\
                 instructions, selectors {s:.0} ({:.2}×) and a thread {th:.0}.",
                c / s
            ),
            _ => String::new(),
        };
        let cheap = co.rss_per_conn_kib < t.rss_per_conn_kib / 2.0
            && co.rss_spoken_kib.unwrap_or(f64::MAX) < t.rss_per_conn_kib / 2.0;
        let lean = match (instr(co, 1), instr(sel, 1)) {
            (Some(c), Some(s)) => c <= 2.0 * s,
            _ => false,
        };
        let verdict = match (cheap, lean) {
            (true, true) => "Borne out",
            (true, false) => {
                "Borne out for memory, not for instructions: the executor and the \
                 reactor's wakers cost more per request than the loop they hide"
            }
            _ => "Not clearly borne out",
        };
        let _ = writeln!(
            md,
            "\n**\"Coroutines: one thread switching between tasks whenever one would block on\n\
             I/O\"** (002, gevent). They read like threads and cost like the event loop.\n\
             {verdict}: coroutine-echo's handler is blocking-echo's loop with `.await`\n\
             where gevent would switch, and each idle connection cost it {}, against\n\
             {} for selectors and {} for a thread.{counted}",
            mem(co),
            mem(sel),
            mem(t)
        );
    }
}

fn charts(out: &Path, all: &All) -> anyhow::Result<()> {
    let dir = out.join("bench/charts");
    // Throughput against connections, depth 1.
    {
        let path = dir.join("throughput.svg");
        let root = SVGBackend::new(&path, (900, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = all
            .iter()
            .flat_map(|(_, r)| {
                r.grid
                    .iter()
                    .filter(|((_, d), _)| *d == 1)
                    .filter_map(|(_, p)| p.map(|p| p.rps))
            })
            .fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Requests/s against connections (depth 1)",
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d((1u32..1000u32).log_scale(), 0f64..max * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("active connections")
            .y_desc("requests/s")
            .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
            .draw()?;
        for (i, (m, r)) in all.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(u32, f64)> = r
                .grid
                .iter()
                .filter(|((_, d), _)| *d == 1)
                .filter_map(|((c, _), p)| p.map(|p| (*c as u32, p.rps)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(m.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    // p99 against idle connections.
    {
        let path = dir.join("p99-idle.svg");
        let root = SVGBackend::new(&path, (900, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_idle = all
            .iter()
            .flat_map(|(_, r)| r.idle.iter().map(|(n, _)| *n + 10))
            .max()
            .unwrap_or(10)
            .max(100);
        let max = all
            .iter()
            .flat_map(|(_, r)| r.idle.iter().filter_map(|(_, p)| p.map(|p| p.p99_us)))
            .fold(100.0, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "p99 latency of 10 active connections against connections held",
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(
                (10usize..max_idle * 11 / 10).log_scale(),
                (10f64..max * 1.5).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("connections held: 10 active and the idle ones (log scale)")
            .y_desc("p99 latency (µs, log scale)")
            .draw()?;
        for (i, (m, r)) in all.iter().enumerate() {
            let points: Vec<(usize, f64)> = r
                .idle
                .iter()
                .filter_map(|(n, p)| p.map(|p| (*n + 10, p.p99_us)))
                .collect();
            if points.is_empty() {
                continue;
            }
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(m.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    // RSS per idle connection, one bar per model.
    {
        let path = dir.join("rss-per-connection.svg");
        let root = SVGBackend::new(&path, (900, 60 + 44 * all.len() as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = all
            .iter()
            .map(|(_, r)| r.rss_per_conn_kib)
            .fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Resident memory per idle connection (KiB)",
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(10)
            .build_cartesian_2d(0f64..max * 1.6, 0f64..all.len() as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("KiB")
            .draw()?;
        for (i, (m, r)) in all.iter().enumerate() {
            let y = (all.len() - 1 - i) as f64;
            let color = Palette99::pick(i).to_rgba();
            chart.draw_series(std::iter::once(Rectangle::new(
                [(0.0, y + 0.15), (r.rss_per_conn_kib, y + 0.85)],
                color.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{} — {:.1}", m.name, r.rss_per_conn_kib),
                (r.rss_per_conn_kib + max * 0.02, y + 0.65),
                ("sans-serif", 15),
            )))?;
        }
        root.present()?;
    }
    // Memory per connection at the ceiling: the server's and the kernel's,
    // stacked, one bar per model that ran the sweep.
    {
        let rows: Vec<(&Model, f64, f64)> = all
            .iter()
            .filter_map(|(m, r)| r.scale.last().map(|p| (m, p.user_kib, p.kernel_kib)))
            .collect();
        let path = dir.join("memory-at-scale.svg");
        let root =
            SVGBackend::new(&path, (900, 90 + 44 * rows.len().max(1) as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = rows.iter().map(|(_, u, k)| u + k).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Memory per connection at the ceiling: server (dark) + kernel (light), KiB",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(10)
            .build_cartesian_2d(0f64..max * 1.9, 0f64..rows.len().max(1) as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("KiB per connection (kernel: both ends of loopback)")
            .draw()?;
        for (i, (m, user, kernel)) in rows.iter().enumerate() {
            let y = (rows.len() - 1 - i) as f64;
            let color = Palette99::pick(i).to_rgba();
            chart.draw_series([
                Rectangle::new([(0.0, y + 0.15), (*user, y + 0.85)], color.filled()),
                Rectangle::new(
                    [(*user, y + 0.15), (user + kernel, y + 0.85)],
                    color.mix(0.35).filled(),
                ),
            ])?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{} — {user:.2} + {kernel:.2}", m.name),
                (user + kernel + max * 0.02, y + 0.65),
                ("sans-serif", 15),
            )))?;
        }
        root.present()?;
    }
    Ok(())
}
