//! BENCHMARKS.md's "Latency against offered load", and its chart.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::All;
use crate::latency::{ACTIVE, COMPARED, GENERATOR_SLACK_US, MANY, OBJECTIVE_US};
use crate::model::{Env, Model};
use crate::results::{Curve, Step};

/// The idle crowd's curve of a model, if it ran one (the sweep's own way
/// of sending: one in flight, 100 connections).
fn crowd(r: &[Curve]) -> Option<&Curve> {
    r.iter().find(|c| c.idle > 0 && c.is_main())
}

fn quiet(r: &[Curve]) -> Option<&Curve> {
    r.iter().find(|c| c.idle == 0 && c.is_main())
}

/// The curves of a model sent one way: (none idle, the crowd).
fn sent_as(r: &[Curve], conns: usize, pipelined: bool) -> (Option<&Curve>, Option<&Curve>) {
    let find = |crowd: bool| {
        r.iter()
            .find(|c| (c.idle > 0) == crowd && c.pipelined == pipelined && c.conns == conns)
    };
    (find(false), find(true))
}

/// The ways of sending a model's curves were run in, the sweep's own first.
fn ways(r: &[Curve]) -> Vec<(usize, bool)> {
    let mut ways: Vec<(usize, bool)> = Vec::new();
    for c in r {
        if !ways.contains(&(c.conns, c.pipelined)) {
            ways.push((c.conns, c.pipelined));
        }
    }
    ways
}

/// The section, after the closed-loop tables: the method, the generator's
/// own ceiling, the 1 ms column, every step, and Gammo, Brecht et al.
pub fn section(md: &mut String, env: &Env, all: &All, generator: (&Model, &[Step])) {
    if all
        .iter()
        .all(|(_, r)| r.latency.iter().all(|c| c.steps.is_empty()))
    {
        return;
    }
    let crowd_size = crate::latency::crowds(env)[1];
    let pinned = if env.host.pinned {
        "The server runs pinned to core 0 and loadgen to core 1 (`sched_setaffinity`),\n\
         so that neither takes the other's time: each model gets one core, threads and\n\
         children included."
    } else {
        "This machine has one core: server and generator share it."
    };
    let secs = if env.quick { 0.3 } else { env.secs };
    let steps = all
        .iter()
        .flat_map(|(_, r)| r.latency.iter().flat_map(|c| c.steps.iter()));
    let (set_aside, of) = steps.fold((0, 0), |(a, n), s| {
        (a + usize::from(s.set_aside > 0), n + 1)
    });
    let aside = if env.latency_rounds > 1 {
        format!(" (in this run, {set_aside} of the {of} steps set a round aside)")
    } else {
        String::new()
    };
    let rounds = if env.latency_rounds == 1 {
        "one round (a run with `--latency-rounds 3` takes the median of three\n\
         interleaved rounds, each model in turn on a fresh server, so that the\n\
         machine's drifts fall on all alike)"
            .to_string()
    } else {
        format!(
            "{} interleaved rounds, each model in turn on a fresh server, so that the\n\
             machine's drifts fall on all alike",
            env.latency_rounds
        )
    };
    let _ = write!(
        md,
        "\n## Latency against offered load\n\n\
         Every latency above comes from a closed loop: each connection sends its next\n\
         request when the last reply is in, so it slows down with the server and hides\n\
         queueing (coordinated omission). Here loadgen runs an open loop (`--rate`):\n\
         {ACTIVE} connections (the pool: its 8 workers) send requests on a fixed\n\
         schedule, evenly spread, whatever the server does, and each latency counts\n\
         from the moment its request was *due*, as wrk2 does. Each connection keeps\n\
         one request in flight (`--in-flight 1`), as clients that wait for each reply\n\
         do (browsers, database drivers, wrk2): a request that falls due while its\n\
         connection waits for a reply waits in the generator, its latency still\n\
         counted from its due time, and one still waiting when the window ends is not\n\
         sent and counts at the time it waited. So a connection carries at most one\n\
         reply a round trip, and the carried rate is bounded by connections ÷ round\n\
         trip: the *bound* beside each step below, from the step's median round trip.\n\
         poll, select and selectors also run **pipelined** at the same rates (each\n\
         request sent when due, behind replies still owed, so a slow server finds\n\
         many waiting and answers them in one read), and one in flight on {MANY}\n\
         connections, where the bound is ten times higher (select: none idle only,\n\
         its FD_SETSIZE being full). The offered rate climbs\n\
         a ladder common to every model, with no idle connections and then with\n\
         {crowd_size} held silent beside the active ones (select: as many as FD_SETSIZE\n\
         lets it hold). Each step runs {secs} s after 0.5 s of warm-up; a step is the\n\
         median by p99 of {rounds}. A model behind its schedule at a step (under 90%\n\
         of the offered rate carried, or p99 past 100 ms) is past saturation, and its\n\
         higher steps are not run in that round. {pinned}\n\n\
         The generator keeps its schedule to within tens of microseconds (a `timerfd`\n\
         with the timer slack at 1 ns), and reports how late it sent each request,\n\
         and how late it read each reply (from the kernel's receive stamp to its read).\n\
         A round in which either lateness had a p99 past {GENERATOR_SLACK_US:.0} µs measured\n\
         the generator, or a stall of this machine, as much as the server: it is set\n\
         aside wherever another round of the step kept to the schedule{aside}. A step\n\
         where every round fell behind is **generator-bound** (late to send, to read,\n\
         or both, as the table says): that figure is the generator's ceiling, not the\n\
         server's. A step whose p99 is no more than the\n\
         generator's lateness is marked *at the generator's resolution*. The objective\n\
         is p99 under {:.0} ms with 95% or more of the offered rate carried, at a step\n\
         that is not generator-bound; a model's figure is the highest step that meets\n\
         it. This machine stalls now and then for milliseconds, whatever runs, and\n\
         more often beside the idle crowd; a stall in most rounds of a step\n\
         shows as a p99 near or past 1 ms there, even at a low step, so a figure\n\
         beside the crowd can move by a few ladder steps from one full run to the\n\
         next. A model that misses the objective at every step beside the crowd is\n\
         hurt by the crowd itself, not by a stall.\n",
        OBJECTIVE_US / 1000.0
    );
    generator_table(md, generator);
    objective_table(md, all, crowd_size);
    let _ = write!(
        md,
        "\n![p99 against offered load, with and without {crowd_size} idle connections](bench/charts/latency-offered.svg)\n"
    );
    if all
        .iter()
        .any(|(m, r)| COMPARED.contains(&m.name) && r.latency.iter().any(|c| !c.steps.is_empty()))
    {
        let _ = write!(
            md,
            "\n![Replies per second carried against requests per second offered, poll and select with and without {crowd_size} idle connections, selectors beside them](bench/charts/carried-offered.svg)\n"
        );
    }
    steps_table(md, all);
    paper(md, all);
}

fn generator_table(md: &mut String, (m, steps): (&Model, &[Step])) {
    if steps.is_empty() {
        return;
    }
    let held = steps
        .iter()
        .take_while(|s| !s.generator_bound())
        .last()
        .map(|s| s.offered);
    let _ = write!(
        md,
        "\n### The generator's own ceiling\n\n\
         loadgen (one thread, one core) against the fastest server here, {}, with no\n\
         idle connections, at rising rates until it falls behind its own schedule:\n\n\
         | offered/s | achieved/s | late to send p99 µs | max µs | late to read p99 µs | max µs | server p99 µs |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
        m.name
    );
    for s in steps {
        if s.lost {
            let _ = writeln!(md, "| {:.0} | lost | — | — | — | — | — |", s.offered);
            continue;
        }
        let _ = writeln!(
            md,
            "| {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}{} |",
            s.offered,
            s.achieved,
            s.late_p99_us,
            s.late_max_us,
            s.read_late_p99_us,
            s.read_late_max_us,
            s.p99_us,
            s.late_to().map_or(String::new(), |w| format!(
                " (generator-bound: late to {w})"
            ))
        );
    }
    let _ = match held {
        Some(rate) => writeln!(
            md,
            "\nThe generator holds its schedule up to {rate:.0} requests/s here, against\n\
             this server; in the sweep it held more against some servers and less against\n\
             others. So a step is judged by the generator's own lateness in that step, not\n\
             by this table: a step above this rate is the server's figure only where the\n\
             generator kept to its schedule there. On two cores, one for each, the fastest\n\
             models may not saturate before the generator does: where a model's curve\n\
             stays flat to the ladder's top, its knee lies beyond what this machine can\n\
             offer it, and the 1 ms table says so (\"the ladder's top\")."
        ),
        None => writeln!(
            md,
            "\nThe generator fell behind at the lowest rate tried: every step below is\n\
             labelled by its own lateness."
        ),
    };
}

/// The sustainable rate at the objective, none idle and beside the crowd.
fn objective_table(md: &mut String, all: &All, crowd_size: usize) {
    let _ = write!(
        md,
        "\n### The highest offered rate with p99 under 1 ms\n\n\
         | model | none idle | {crowd_size} idle (held) | change |\n\
         |---|---:|---:|---:|\n"
    );
    let rate = |c: Option<&Curve>| match c {
        None => "—".to_string(),
        Some(c) if c.why_not.is_some() => String::new(),
        Some(c) => match c.sustainable() {
            Some(r) => format!("{r:.0}/s{}", top_note(c, r)),
            None => none_met(c).into(),
        },
    };
    for (m, r) in all {
        if r.latency.iter().all(|c| c.steps.is_empty()) {
            continue;
        }
        let (q, c) = (quiet(&r.latency), crowd(&r.latency));
        let held = c.map_or(String::new(), |c| {
            if c.why_not.is_some() {
                String::new()
            } else {
                format!(" ({})", c.held)
            }
        });
        let change = match (
            q.and_then(Curve::sustainable),
            c.and_then(Curve::sustainable),
        ) {
            (Some(a), Some(b)) => format!("{:+.0}%", (b - a) / a * 100.0),
            _ => "—".into(),
        };
        let why = c
            .and_then(|c| c.why_not.clone())
            .map_or(String::new(), |w| format!(" {w}"));
        let _ = writeln!(
            md,
            "| {} | {} | {}{held}{why} | {change} |",
            m.name,
            rate(q),
            rate(c),
        );
    }
}

/// Why no step met the objective: the server's latency, or, where every
/// step it kept under 1 ms was one the generator fell behind at, the
/// generator's.
fn none_met(c: &Curve) -> &'static str {
    let ran = |s: &&Step| !s.lost && s.failed.is_none();
    let under = |s: &&Step| ran(s) && s.p99_us < OBJECTIVE_US;
    if c.steps.iter().filter(ran).all(Step::generator_bound) {
        "none: the generator fell behind at every step"
    } else if c.steps.iter().filter(under).count() > 0
        && c.steps.iter().filter(under).all(Step::generator_bound)
    {
        "none: the generator fell behind at every step under 1 ms"
    } else {
        "none: p99 of 1 ms or more, or under 95% carried, at every step"
    }
}

/// " (the ladder's top)" when the objective held at every step.
fn top_note(c: &Curve, rate: f64) -> &'static str {
    if c.steps.last().is_some_and(|s| s.offered == rate) {
        " (the ladder's top)"
    } else {
        ""
    }
}

fn steps_table(md: &mut String, all: &All) {
    md.push_str(
        "\n### Every step\n\n\
         Achieved rate, the replies a second carried (and its share of the offered),\n\
         then p50, p99 and p99.9 in µs, and with one in flight the bound (connections ÷\n\
         the step's median round trip, replies/s) and the requests still waiting in the\n\
         generator, unsent, when the window ended; none idle | beside the crowd. *sent\n\
         as*: one in flight or pipelined, on how many connections. *gen send*, *gen\n\
         read*: generator-bound, late to send or to read; *res*: at the generator's\n\
         resolution; *lost*: requests still unanswered 10 s after the window (past\n\
         saturation); *failed*: the run failed (the log says why); —: not run (past\n\
         saturation in every round, or not a model that can hold the crowd).\n\n\
         | model | sent as | offered/s | none idle: achieved | p50 | p99 | p99.9 | bound/s | unsent \
         | crowd: achieved | p50 | p99 | p99.9 | bound/s | unsent |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (m, r) in all {
        for (conns, pipelined) in ways(&r.latency) {
            let (q, c) = sent_as(&r.latency, conns, pipelined);
            let mut offered: Vec<f64> = q
                .iter()
                .chain(c.iter())
                .flat_map(|c| c.steps.iter())
                .map(|s| s.offered)
                .collect();
            if offered.is_empty() {
                continue;
            }
            offered.sort_by(f64::total_cmp);
            offered.dedup();
            let how = q.or(c).map_or(String::new(), |c| c.mode());
            for rate in offered {
                let at = |curve: Option<&Curve>| -> String {
                    let Some(s) = curve.and_then(|c| c.steps.iter().find(|s| s.offered == rate))
                    else {
                        return "— | — | — | — | — | —".into();
                    };
                    if s.failed.is_some() {
                        return "failed | — | — | — | — | —".into();
                    }
                    if s.lost {
                        return "lost | — | — | — | — | —".into();
                    }
                    let mark = match s.late_to() {
                        Some("send") => " gen send".to_string(),
                        Some("read") => " gen read".to_string(),
                        Some(_) => " gen send, read".to_string(),
                        None if s.at_resolution() => " res".to_string(),
                        None => String::new(),
                    };
                    let (bound, unsent) = if s.bound_rps > 0.0 {
                        (format!("{:.0}", s.bound_rps), format!("{:.0}", s.unsent))
                    } else {
                        ("—".into(), "—".into())
                    };
                    format!(
                        "{:.0} ({:.0}%){mark} | {:.0} | {:.0} | {:.0} | {bound} | {unsent}",
                        s.achieved,
                        100.0 * s.achieved / s.offered,
                        s.p50_us,
                        s.p99_us,
                        s.p999_us
                    )
                };
                let _ = writeln!(
                    md,
                    "| {} | {how} | {rate:.0} | {} | {} |",
                    m.name,
                    at(q),
                    at(c)
                );
            }
        }
    }
}

/// The comparison with Gammo, Brecht et al.: select and poll beside a
/// crowd, against the event mechanisms that do not walk every descriptor,
/// at one offered rate (40 000 requests/s), at the most each carried, and
/// at the 1 ms objective. Every claim in its prose is read from the run.
fn paper(md: &mut String, all: &All) {
    const RATE: f64 = 40_000.0;
    /// The paper's loss in replies per second for select and poll with
    /// 10 000 idle connections, at most.
    const PAPER_LOSS: f64 = 79.0;
    let at = |c: &Curve| {
        c.steps
            .iter()
            .find(|s| s.offered == RATE && !s.lost)
            .cloned()
    };
    // The most replies a second it gave, the paper's measure: the
    // generator's lateness moves when they were asked for, not how many
    // were answered.
    let carried = |c: &Curve| {
        c.steps
            .iter()
            .filter(|s| !s.lost)
            .map(|s| s.achieved)
            .fold(0.0, f64::max)
    };
    let objective = |c: &Curve| match c.sustainable() {
        Some(r) => format!("{:.0}k", r / 1000.0),
        None => "none".into(),
    };
    let curves = |name: &str| {
        let (_, r) = all.iter().find(|(m, _)| m.name == name)?;
        let (q, c) = (quiet(&r.latency)?, crowd(&r.latency)?);
        (c.why_not.is_none()).then_some((q, c))
    };
    // (label, p50 ratio at RATE) of every line written.
    let mut ratios: Vec<(&str, f64)> = Vec::new();
    let mut lines = Vec::new();
    for (name, label) in [
        ("poll", "poll"),
        ("select", "select"),
        ("selectors (polling, epoll)", "selectors (epoll)"),
        ("epoll LT, HTTP", "epoll-http LT"),
        ("io_uring multishot", "io_uring multishot"),
    ] {
        let Some((q, c)) = curves(name) else {
            continue;
        };
        let (Some(a), Some(b)) = (at(q), at(c)) else {
            // Past saturation below that rate beside the crowd (or without
            // it): the line says so, with what it carried.
            let below = |x: Option<Step>| match x {
                Some(s) => format!("p50 {:.0} µs, p99 {:.0} µs", s.p50_us, s.p99_us),
                None => "not reached (past saturation lower on the ladder)".into(),
            };
            lines.push(format!(
                "- {label} with {} idle connections: at {:.0}k requests/s offered, {} \
                 without the crowd, {} beside it; the most it carried, {:.0}k → {:.0}k \
                 replies/s; p99 under 1 ms up to {} → {}",
                c.held,
                RATE / 1000.0,
                below(at(q)),
                below(at(c)),
                carried(q) / 1000.0,
                carried(c) / 1000.0,
                objective(q),
                objective(c),
            ));
            continue;
        };
        let ratio = b.p50_us / a.p50_us.max(1.0);
        ratios.push((label, ratio));
        lines.push(format!(
            "- {label} with {} idle connections: at {:.0}k requests/s offered, p50 {:.0} µs → \
             {:.0} µs (×{ratio:.1}) and p99 {:.0} µs → {:.0} µs; the most it carried, \
             {:.0}k → {:.0}k replies/s; p99 under 1 ms up to {} → {}",
            c.held,
            RATE / 1000.0,
            a.p50_us,
            b.p50_us,
            a.p99_us,
            b.p99_us,
            carried(q) / 1000.0,
            carried(c) / 1000.0,
            objective(q),
            objective(c),
        ));
    }
    if lines.is_empty() {
        return;
    }
    let _ = write!(
        md,
        "\n### Beside Gammo, Brecht et al. (2004)\n\n\
         Gammo, Brecht, Shukla and Pariag (\"Comparing and Evaluating epoll, select, and\n\
         poll Event Mechanisms\", Ottawa Linux Symposium 2004) drove the µserver, an\n\
         event-driven HTTP server, at rising request rates. Without idle connections,\n\
         select and poll performed comparably to epoll; with 10,000 idle connections\n\
         added, the performance of select and poll degraded by up to {PAPER_LOSS:.0}% in replies\n\
         per second, while epoll's held (Linux Symposium 2004, volume one, p. 222).\n\n\
         Here, none idle → the crowd:\n\n{}.\n",
        lines.join(";\n")
    );
    carried_table(md, all);
    // The reading, for poll (the paper's 10 000) and select (at its wall),
    // in replies per second, one in flight and pipelined.
    let mut text = String::new();
    for name in ["poll", "select"] {
        let Some((_, r)) = all.iter().find(|(m, _)| m.name == name) else {
            continue;
        };
        if let Some(reading) = carried_reading(name, &r.latency) {
            text.push_str(&reading);
        }
    }
    let Some((q, c)) = curves("poll") else {
        if !text.is_empty() {
            md.push('\n');
            md.push_str(&wrap(&text, 80));
            md.push('\n');
        }
        return;
    };
    let others = ratios
        .iter()
        .filter(|(l, _)| !["poll", "select"].contains(l))
        .map(|&(_, r)| r)
        .fold(0.0, f64::max);
    if let Some(&(_, r)) = ratios.iter().find(|(l, _)| *l == "poll")
        && others > 0.0
    {
        let _ = write!(
            text,
            "Every `poll` call hands the kernel all {} descriptors and walks them, and \
             each batch of replies waits for that walk: at {:.0}k requests/s poll's p50 \
             is ×{r:.1} what it was without the crowd, where the mechanisms that do not \
             walk it (epoll, io_uring) stay within ×{others:.1}. ",
            c.held + c.conns,
            RATE / 1000.0
        );
    }
    let _ = write!(
        text,
        "At the 1 ms objective the crowd costs poll {}. ",
        match (q.sustainable(), c.sustainable()) {
            (Some(a), Some(b)) => format!(
                "{:.0}% of its sustainable rate ({:.0}k → {:.0}k requests/s)",
                100.0 * (1.0 - b / a),
                a / 1000.0,
                b / 1000.0
            ),
            (Some(a), None) => format!(
                "all of it: {:.0}k requests/s without it, and no step with p99 under 1 ms \
                 beside it",
                a / 1000.0
            ),
            _ => "nothing that can be told: it met the objective at no step even without it".into(),
        }
    );
    if let Some((sq, sc)) = curves("select") {
        let _ = write!(
            text,
            "Our select cannot watch more than FD_SETSIZE descriptors, so it held \
             {} idle connections, not 10,000, and the comparison at 10,000 is poll's; at \
             its wall the highest rate with p99 under 1 ms went from {} to {} requests/s.",
            sc.held,
            objective(sq),
            objective(sc)
        );
    }
    md.push('\n');
    md.push_str(&wrap(&text, 80));
    md.push('\n');
}

/// The carried rate at one offered rate, where the step ran to the end.
fn carried_at(c: Option<&Curve>, rate: f64) -> Option<f64> {
    c?.steps
        .iter()
        .find(|s| s.offered == rate && !s.lost)
        .map(|s| s.achieved)
}

/// Replies per second carried at each offered rate, for poll and select
/// and selectors beside them, without and with the crowd, in every way
/// each was sent: the paper's measure, read from the run.
fn carried_table(md: &mut String, all: &All) {
    let mut rows = String::new();
    for (m, r) in all.iter().filter(|(m, _)| COMPARED.contains(&m.name)) {
        for (conns, pipelined) in ways(&r.latency) {
            let (q, c) = sent_as(&r.latency, conns, pipelined);
            let mut offered: Vec<f64> = q
                .iter()
                .chain(c.iter())
                .flat_map(|c| c.steps.iter())
                .map(|s| s.offered)
                .collect();
            offered.sort_by(f64::total_cmp);
            offered.dedup();
            let how = q.or(c).map_or(String::new(), |c| c.mode());
            for rate in offered {
                let (a, b) = (carried_at(q, rate), carried_at(c, rate));
                let show = |x: Option<f64>| x.map_or("—".to_string(), |x| format!("{x:.0}"));
                let change = match (a, b) {
                    (Some(a), Some(b)) if a > 0.0 => percent((b - a) / a * 100.0),
                    _ => "—".into(),
                };
                let _ = writeln!(
                    rows,
                    "| {} | {how} | {rate:.0} | {} | {} | {change} |",
                    m.name,
                    show(a),
                    show(b)
                );
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = write!(
        md,
        "\nReplies per second carried at each offered rate, without the crowd and beside\n\
         it (select: as many as FD_SETSIZE lets it hold), one in flight and pipelined:\n\n\
         | model | sent as | offered/s | none idle: replies/s | crowd: replies/s | change |\n\
         |---|---|---:|---:|---:|---:|\n{rows}"
    );
}

/// What the crowd took from `name`'s replies per second, one in flight, at
/// the offered rate where it took the most, and what the same model
/// carried pipelined there: what pipelining hides. `None` where the run
/// has no step with both.
fn carried_reading(name: &str, curves: &[Curve]) -> Option<String> {
    const PAPER_LOSS: f64 = 79.0;
    let (q, c) = (quiet(curves)?, crowd(curves)?);
    let loss = |a: f64, b: f64| 100.0 * (1.0 - b / a.max(1.0));
    let both: Vec<(f64, f64, f64)> = q
        .steps
        .iter()
        .filter_map(|s| {
            Some((
                s.offered,
                carried_at(Some(q), s.offered)?,
                carried_at(Some(c), s.offered)?,
            ))
        })
        .collect();
    let worst = both
        .iter()
        .copied()
        .max_by(|x, y| loss(x.1, x.2).total_cmp(&loss(y.1, y.2)))?;
    // Where the crowd took nothing anywhere, the highest rate both ran.
    let (rate, a, b) = if loss(worst.1, worst.2) < 5.0 {
        *both.last()?
    } else {
        worst
    };
    let mut text = if loss(a, b) < 5.0 {
        format!(
            "With one request in flight on each of its {} connections, {name} lost no \
             replies to {} idle connections at any step of the ladder: at {rate:.0} \
             requests/s offered it carried {b:.0} replies/s beside them and {a:.0} \
             without, where the paper's select and poll lost up to {PAPER_LOSS:.0}%. ",
            c.conns, c.held
        )
    } else {
        format!(
            "With one request in flight on each of its {} connections, {name} carried \
             {b:.0} replies/s beside {} idle connections at {rate:.0} requests/s offered, \
             against {a:.0} without them: a loss of {:.0}%, the most on the ladder, where \
             the paper's select and poll lost up to {PAPER_LOSS:.0}%. ",
            c.conns,
            c.held,
            loss(a, b)
        )
    };
    let (pq, pc) = sent_as(curves, c.conns, true);
    if let (Some(pa), Some(pb)) = (carried_at(pq, rate), carried_at(pc, rate)) {
        let hidden = loss(a, b) - loss(pa, pb);
        let _ = write!(
            text,
            "Pipelined at the same rate it carried {pb:.0} beside the crowd, {pa:.0} \
             without ({}): {} ",
            if loss(pa, pb) < 5.0 {
                "nothing lost".to_string()
            } else {
                format!("a loss of {:.0}%", loss(pa, pb))
            },
            if loss(a, b) < 5.0 {
                "one in flight lost nothing either, so there was no loss for pipelining to \
                 hide."
                    .to_string()
            } else if hidden >= 5.0 {
                format!(
                    "requests piled up on each connection while a call walked the crowd, \
                     and one read took them all, so pipelining hides \
                     {hidden:.0} points of the loss."
                )
            } else {
                "pipelining hides none of the loss here.".to_string()
            }
        );
    }
    let (mq, mc) = sent_as(curves, MANY, false);
    if let (Some(ma), Some(mb)) = (carried_at(mq, rate), carried_at(mc, rate)) {
        let _ = write!(
            text,
            "On {MANY} connections, one in flight each, it carried {mb:.0} beside the \
             crowd and {ma:.0} without. "
        );
    }
    Some(text)
}

/// A change in percent, signed, with no "-0%".
fn percent(x: f64) -> String {
    if x.abs() < 0.5 {
        "0%".into()
    } else {
        format!("{x:+.0}%")
    }
}

/// `text` broken into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if line > 0 && line + 1 + len > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += len;
    }
    out
}

/// `bench/charts/latency-offered.svg`: p99 (log) against offered load, one
/// line per model, none idle on the left, the crowd on the right.
pub fn chart(out: &Path, all: &All) -> anyhow::Result<()> {
    let path = out.join("bench/charts/latency-offered.svg");
    let root = SVGBackend::new(&path, (1400, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    let max_rate = all
        .iter()
        .flat_map(|(_, r)| r.latency.iter().flat_map(|c| c.steps.iter()))
        .map(|s| s.offered)
        .fold(1000.0, f64::max);
    let max_p99 = all
        .iter()
        .flat_map(|(_, r)| r.latency.iter().flat_map(|c| c.steps.iter()))
        .filter(|s| !s.lost)
        .map(|s| s.p99_us)
        .fold(1000.0, f64::max);
    for (panel, crowd_panel) in panels.iter().zip([false, true]) {
        let title = if crowd_panel {
            let held = all
                .iter()
                .filter_map(|(_, r)| crowd(&r.latency).filter(|c| c.why_not.is_none()))
                .map(|c| c.idle)
                .max()
                .unwrap_or(0);
            format!("p99 against offered load, {held} idle connections")
        } else {
            "p99 against offered load, no idle connections".into()
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (1000f64..max_rate * 1.2).log_scale(),
                (10f64..max_p99 * 2.0).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("requests/s offered (log scale)")
            .y_desc("p99 latency, µs (log scale)")
            .x_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
            .draw()?;
        // The objective, for reference.
        chart.draw_series(LineSeries::new(
            [(1000.0, OBJECTIVE_US), (max_rate * 1.2, OBJECTIVE_US)],
            BLACK.mix(0.4).stroke_width(1),
        ))?;
        for (i, (m, r)) in all.iter().enumerate() {
            let curve = if crowd_panel {
                crowd(&r.latency)
            } else {
                quiet(&r.latency)
            };
            let Some(curve) = curve.filter(|c| c.why_not.is_none()) else {
                continue;
            };
            let points: Vec<(f64, f64)> = curve
                .steps
                .iter()
                .filter(|s| !s.lost)
                .map(|s| (s.offered, s.p99_us.max(10.0)))
                .collect();
            if points.is_empty() {
                continue;
            }
            let color = Palette99::pick(i).to_rgba();
            let name = if crowd_panel && curve.held < curve.idle {
                format!("{} ({} idle)", m.name, curve.held)
            } else {
                m.name.to_string()
            };
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(name)
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
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// `bench/charts/carried-offered.svg`, on the paper's axes: replies per
/// second carried against requests per second offered, for poll and
/// select without the crowd (solid) and beside it (thin, triangles), and
/// selectors as the reference; one panel for each way they were sent.
pub fn carried_chart(out: &Path, all: &All) -> anyhow::Result<()> {
    let path = out.join("bench/charts/carried-offered.svg");
    let compared: Vec<_> = all
        .iter()
        .enumerate()
        .filter(|(_, (m, _))| COMPARED.contains(&m.name))
        .collect();
    let mut panels_of: Vec<(usize, bool)> = Vec::new();
    for (_, (_, r)) in &compared {
        for way in ways(&r.latency) {
            if !panels_of.contains(&way) {
                panels_of.push(way);
            }
        }
    }
    let panels_of: Vec<_> = panels_of
        .into_iter()
        .filter(|&(conns, pipelined)| {
            compared.iter().any(|(_, (_, r))| {
                let (q, c) = sent_as(&r.latency, conns, pipelined);
                q.iter().chain(c.iter()).any(|c| !c.steps.is_empty())
            })
        })
        .collect();
    let width = 640 * panels_of.len().max(1) as u32;
    let root = SVGBackend::new(&path, (width, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_rate = compared
        .iter()
        .flat_map(|(_, (_, r))| r.latency.iter().flat_map(|c| c.steps.iter()))
        .map(|s| s.offered)
        .fold(1000.0, f64::max)
        * 1.05;
    let panels = root.split_evenly((1, panels_of.len().max(1)));
    for (panel, &(conns, pipelined)) in panels.iter().zip(&panels_of) {
        let how = Curve {
            conns,
            pipelined,
            ..Curve::default()
        }
        .mode();
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("replies/s carried, {how}"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..max_rate, 0f64..max_rate)?;
        chart
            .configure_mesh()
            .x_desc("requests/s offered")
            .y_desc("replies/s carried")
            .x_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
            .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
            .draw()?;
        // Everything offered carried, for reference.
        chart.draw_series(LineSeries::new(
            [(0.0, 0.0), (max_rate, max_rate)],
            BLACK.mix(0.3).stroke_width(1),
        ))?;
        for (i, (m, r)) in &compared {
            let (q, c) = sent_as(&r.latency, conns, pipelined);
            for (curve, crowd) in [(q, false), (c, true)] {
                let Some(curve) = curve.filter(|c| c.why_not.is_none()) else {
                    continue;
                };
                let points: Vec<(f64, f64)> = curve
                    .steps
                    .iter()
                    .filter(|s| !s.lost)
                    .map(|s| (s.offered, s.achieved))
                    .collect();
                if points.is_empty() {
                    continue;
                }
                let color = Palette99::pick(*i).to_rgba();
                let (name, stroke) = if crowd {
                    (format!("{}, {} idle", m.name, curve.held), 1)
                } else {
                    (format!("{}, none idle", m.name), 3)
                };
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(stroke)))?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(stroke))
                    });
                if crowd {
                    chart.draw_series(
                        points
                            .into_iter()
                            .map(|p| TriangleMarker::new(p, 5, color.filled())),
                    )?;
                } else {
                    chart.draw_series(
                        points
                            .into_iter()
                            .map(|p| Circle::new(p, 3, color.filled())),
                    )?;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
