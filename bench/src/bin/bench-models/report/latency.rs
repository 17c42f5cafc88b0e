//! BENCHMARKS.md's "Latency against offered load", and its chart.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::All;
use crate::latency::{GENERATOR_SLACK_US, OBJECTIVE_US};
use crate::model::{Env, Model};
use crate::results::{Curve, Step};

/// The idle crowd's curve of a model, if it ran one.
fn crowd(r: &[Curve]) -> Option<&Curve> {
    r.iter().find(|c| c.idle > 0)
}

fn quiet(r: &[Curve]) -> Option<&Curve> {
    r.iter().find(|c| c.idle == 0)
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
    let pinned = if crate::drive::pinning() {
        "The server runs pinned to core 0 and loadgen to core 1 (`sched_setaffinity`),\n\
         so that neither takes the other's time: each model gets one core, threads and\n\
         children included."
    } else {
        "This machine has one core: server and generator share it."
    };
    let secs = if env.quick { 0.3 } else { env.secs };
    let rounds = if env.latency_rounds == 1 {
        "one round (a run with `--latency-rounds 3` reports the median of three\n\
         interleaved rounds"
            .to_string()
    } else {
        format!("{} interleaved rounds", env.latency_rounds)
    };
    let _ = write!(
        md,
        "\n## Latency against offered load\n\n\
         Every latency above comes from a closed loop: each connection sends its next\n\
         request when the last reply is in, so it slows down with the server and hides\n\
         queueing (coordinated omission). Here loadgen runs an open loop (`--rate`):\n\
         10 connections (the pool: its 8 workers' worth) send requests on a fixed\n\
         schedule, evenly spread, whatever the server does, and each latency counts\n\
         from the moment its request was *due*, as wrk2 does. The offered rate climbs a ladder common to every model, with no\n\
         idle connections and then with {crowd_size} held silent beside the active ones\n\
         (select: as many as FD_SETSIZE lets it hold). Each step runs {secs} s after\n\
         0.5 s of warm-up; a step is the median by p99 of {rounds}, each model in turn\n\
         on a fresh server, so the machine's drifts fall on all alike). A model behind its schedule at a step (under 90% of the\n\
         offered rate carried, or p99 past 100 ms) is past saturation, and its higher\n\
         steps are not run in that round. {pinned}\n\n\
         The generator keeps its schedule to within tens of microseconds (a `timerfd`\n\
         with the timer slack at 1 ns), and reports how late it sent each request.\n\
         A step where its own lateness has a p99 past {GENERATOR_SLACK_US:.0} µs is\n\
         **generator-bound**: that figure is the generator's ceiling, not the server's.\n\
         A step whose p99 is no more than the generator's lateness is marked *at the\n\
         generator's resolution*. The objective is p99 under {:.0} ms with 95% or more\n\
         of the offered rate carried; a model's figure is the highest step that meets\n\
         it (this machine stalls now and then for tens of milliseconds, whatever runs,\n\
         and a stall during a low step shows as a p99 near 1 ms there).\n",
        OBJECTIVE_US / 1000.0
    );
    generator_table(md, generator);
    objective_table(md, all, crowd_size);
    let _ = write!(
        md,
        "\n![p99 against offered load, with and without {crowd_size} idle connections](bench/charts/latency-offered.svg)\n"
    );
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
         | offered/s | achieved/s | generator late p99 µs | late max µs | server p99 µs |\n\
         |---:|---:|---:|---:|---:|\n",
        m.name
    );
    for s in steps {
        if s.lost {
            let _ = writeln!(md, "| {:.0} | lost | — | — | — |", s.offered);
            continue;
        }
        let _ = writeln!(
            md,
            "| {:.0} | {:.0} | {:.0} | {:.0} | {:.0}{} |",
            s.offered,
            s.achieved,
            s.late_p99_us,
            s.late_max_us,
            s.p99_us,
            if s.generator_bound() {
                " (generator-bound)"
            } else {
                ""
            }
        );
    }
    let _ = match held {
        Some(rate) => writeln!(
            md,
            "\nThe generator holds its schedule up to {rate:.0} requests/s here. On two\n\
             cores, one for each, the fastest models may not saturate before the generator\n\
             does: where a model's curve stays flat to the ladder's top, its knee lies\n\
             beyond what this machine can offer it, and the table says so."
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
            None => "below the lowest step".into(),
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
         Achieved rate (and its share of the offered), then p50, p99 and p99.9 in µs,\n\
         none idle | beside the crowd. *gen*: generator-bound; *res*: at the generator's\n\
         resolution; *lost*: requests still unanswered 10 s after the window (past\n\
         saturation); *failed*: the run failed (the log says why); —: not run (past\n\
         saturation in every round, or not a model that can hold the crowd).\n\n\
         | model | offered/s | none idle: achieved | p50 | p99 | p99.9 | crowd: achieved | p50 | p99 | p99.9 |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (m, r) in all {
        let (Some(q), c) = (quiet(&r.latency), crowd(&r.latency)) else {
            continue;
        };
        let mut offered: Vec<f64> = q
            .steps
            .iter()
            .chain(c.iter().flat_map(|c| c.steps.iter()))
            .map(|s| s.offered)
            .collect();
        offered.sort_by(f64::total_cmp);
        offered.dedup();
        for rate in offered {
            let at = |curve: Option<&Curve>| -> String {
                let Some(s) = curve.and_then(|c| c.steps.iter().find(|s| s.offered == rate)) else {
                    return "— | — | — | —".into();
                };
                if s.failed.is_some() {
                    return "failed | — | — | —".into();
                }
                if s.lost {
                    return "lost | — | — | —".into();
                }
                let mark = if s.generator_bound() {
                    " gen"
                } else if s.at_resolution() {
                    " res"
                } else {
                    ""
                };
                format!(
                    "{:.0} ({:.0}%){mark} | {:.0} | {:.0} | {:.0}",
                    s.achieved,
                    100.0 * s.achieved / s.offered,
                    s.p50_us,
                    s.p99_us,
                    s.p999_us
                )
            };
            let _ = writeln!(
                md,
                "| {} | {rate:.0} | {} | {} |",
                m.name,
                at(Some(q)),
                at(c)
            );
        }
    }
}

/// The comparison with Gammo, Brecht et al.: select and poll beside a
/// crowd, against the event mechanisms that do not walk every descriptor,
/// at one offered rate (40 000 requests/s) and at the most each carried.
fn paper(md: &mut String, all: &All) {
    const RATE: f64 = 40_000.0;
    let at = |c: &Curve| {
        c.steps
            .iter()
            .find(|s| s.offered == RATE && !s.lost)
            .cloned()
    };
    let best = |c: &Curve| c.steps.iter().map(|s| s.achieved).fold(0.0, f64::max);
    let mut lines = Vec::new();
    for (name, label) in [
        ("poll", "poll"),
        ("select", "select"),
        ("selectors (polling, epoll)", "selectors (epoll)"),
        ("epoll LT, HTTP", "epoll-http LT"),
        ("io_uring multishot", "io_uring multishot"),
    ] {
        let Some((_, r)) = all.iter().find(|(m, _)| m.name == name) else {
            continue;
        };
        let (Some(q), Some(c)) = (quiet(&r.latency), crowd(&r.latency)) else {
            continue;
        };
        let (Some(a), Some(b)) = (at(q), at(c)) else {
            continue;
        };
        lines.push(format!(
            "- {label} with {} idle connections: at {:.0}k requests/s offered, p50 {:.0} µs → \
             {:.0} µs and p99 {:.0} µs → {:.0} µs beside the crowd; the most it carried, \
             {:.0}k → {:.0}k requests/s",
            c.held,
            RATE / 1000.0,
            a.p50_us,
            b.p50_us,
            a.p99_us,
            b.p99_us,
            best(q) / 1000.0,
            best(c) / 1000.0
        ));
    }
    let _ = write!(
        md,
        "\n### Beside Gammo, Brecht et al. (2004)\n\n\
         Gammo, Brecht, Shukla and Pariag (\"Comparing and Evaluating epoll, select, and\n\
         poll Event Mechanisms\", Ottawa Linux Symposium 2004) drove the µserver, an\n\
         event-driven HTTP server, at rising request rates. Without idle connections,\n\
         select and poll performed comparably to epoll; with 10,000 idle connections\n\
         added, the performance of select and poll degraded by up to 79% in replies per\n\
         second, while epoll's held (Linux Symposium 2004, volume one, p. 222).\n\n\
         Here, at the same offered rate, none idle → the crowd:\n\n{}.\n\n\
         Our poll keeps up in throughput to the ladder's top, since one generator on one\n\
         core cannot offer it more than its own ceiling (the table above); what\n\
         the crowd costs it is latency: every `poll` call hands the kernel all 10 000\n\
         descriptors and walks them, so each batch waits that walk, and its p50 rises by\n\
         an order of magnitude while epoll's, io_uring's and the thread models' stay\n\
         where they were. That is the paper's loss seen from the other side: their\n\
         server was CPU-bound at its peak, so the walk took replies away; ours has a\n\
         core to spare at these rates, so the walk shows as delay. Their select stood at\n\
         the same FD_SETSIZE wall as ours, so their 10,000 idle connections are our\n\
         poll's comparison; our select shows the wall itself, at about a thousand.\n",
        lines.join(";\n")
    );
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
