//! Latency against offered load: every model under loadgen's open loop
//! (`--rate`), from a low rate to past saturation, with no idle connections
//! and with 10 000 held beside the active ones.
//!
//! Each of 100 active connections keeps one request in flight
//! (`--in-flight 1`), the next waiting in the generator for its reply, as
//! clients that wait for each reply do; so a connection carries no more
//! than one reply a round trip, and a server whose round trip grows
//! carries less than it is offered. Sent as they fall due instead
//! (pipelined), requests pile up on each connection and a slow server
//! reads many at once: poll, select and selectors run that way too, at
//! the same rates, so that the report can show what pipelining hides; and
//! they run with 1000 active connections as well, where the bound of one
//! in flight is ten times higher.
//!
//! A closed loop (each connection waits for its reply before sending again)
//! slows down with the server, so its latency hides queueing. Here requests
//! arrive on a fixed schedule whatever the server does, and each latency
//! counts from when its request was due: the curve bends where the server
//! can no longer keep up, and the knee is the load a model can carry. It is
//! the experiment of Gammo, Brecht et al. ("Comparing and Evaluating
//! epoll, select, and poll Event Mechanisms", OLS 2004), who offered a
//! rising request rate with and without 10 000 idle connections.
//!
//! The server and the generator run pinned to different cores where there
//! are two, so that neither takes the other's time. The generator has a
//! ceiling of its own: past it, it sends late, and a latency no larger than
//! its lateness is its, not the server's. Each step says so when that
//! happens (`generator_bound`, `at_resolution`).

use std::process::Command;
use std::time::Duration;

use crate::drive::{json_number, output_within, pin, start_pinned};
use crate::model::{Env, Model};
use crate::progress;
use crate::results::{Curve, Step};

/// Active connections carrying the offered load.
pub const ACTIVE: usize = 100;
/// The second connection count, where the models serve that many at once.
pub const MANY: usize = 1000;
/// The models also run pipelined and with [`MANY`] connections: the two
/// that walk every descriptor, and the selector beside them.
pub const COMPARED: [&str; 3] = ["poll", "select", "selectors (polling, epoll)"];
/// The latency objective the report's sustainable rate is measured at.
pub const OBJECTIVE_US: f64 = 1000.0;
/// The generator is behind its schedule, not within its resolution, when
/// its own lateness (due to sent) has a p99 past this.
pub const GENERATOR_SLACK_US: f64 = 200.0;

/// The offered rates, requests per second in all: one ladder for every
/// model, so that their curves share an axis.
pub fn ladder(env: &Env) -> Vec<f64> {
    if env.quick {
        vec![2_000.0, 10_000.0, 40_000.0]
    } else {
        vec![
            5_000.0, 10_000.0, 20_000.0, 40_000.0, 70_000.0, 100_000.0, 130_000.0,
        ]
    }
}

/// The idle crowds: none, and 10 000 (with `--quick`, 1000).
pub fn crowds(env: &Env) -> [usize; 2] {
    if env.quick { [0, 1000] } else { [0, 10_000] }
}

/// Which models the sweep runs: all (with `--quick`, two).
pub fn runs(env: &Env, m: &Model) -> bool {
    !env.quick || ["select", "selectors (polling, epoll)"].contains(&m.name)
}

/// One way of driving a model: its active connections, and whether each
/// sends as requests fall due (pipelined) or keeps one in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pass {
    pub conns: usize,
    pub pipelined: bool,
}

/// The passes model `m` runs: one in flight on [`ACTIVE`] connections (or
/// as many as it serves at once: a pool of 8 workers, 8; a ninth would
/// wait in its queue for the whole run, unanswered); for [`COMPARED`], the
/// same pipelined, and one in flight on [`MANY`] where it serves that many.
pub fn passes(m: &Model) -> Vec<Pass> {
    let conns = ACTIVE.min(m.max_active);
    let mut all = vec![Pass {
        conns,
        pipelined: false,
    }];
    if COMPARED.contains(&m.name) {
        all.push(Pass {
            conns,
            pipelined: true,
        });
        if m.max_active >= MANY {
            all.push(Pass {
                conns: MANY,
                pipelined: false,
            });
        }
    }
    all
}

/// Each pass beside each crowd: the curves of one model.
fn plans(env: &Env, m: &Model) -> Vec<(Pass, usize)> {
    passes(m)
        .into_iter()
        .flat_map(|p| crowds(env).map(|idle| (p, idle)))
        .collect()
}

/// Steps the whole sweep may take, for the progress bar.
pub fn planned(env: &Env) -> u64 {
    let rounds = env.latency_rounds;
    let curves: usize = env
        .models
        .iter()
        .filter(|m| runs(env, m))
        .map(|m| plans(env, m).len())
        .sum();
    (rounds * curves * ladder(env).len()) as u64
}

/// The idle connections model `m` holds for a crowd of `idle` beside
/// `conns` active ones, or why it cannot take part: select stops at
/// FD_SETSIZE (its `max_idle` is beside 10 active), and a pool's idle
/// clients would hold its workers.
fn held(m: &Model, idle: usize, conns: usize) -> Result<usize, String> {
    if idle == 0 {
        return Ok(0);
    }
    if m.max_idle == 0 {
        return Err(format!(
            "not run: its {} workers would be held by idle clients, and the active ones \
             left waiting in its queue",
            m.max_active
        ));
    }
    let room = m.max_idle.saturating_add(10).saturating_sub(conns);
    let hold = idle.min(m.max_idle).min(room);
    if hold * 10 < idle.min(m.max_idle) {
        return Err(format!(
            "not run: {conns} active connections leave room for {hold} idle ones under \
             FD_SETSIZE"
        ));
    }
    Ok(hold)
}

/// The sweep: for each round, every model in turn on a fresh server (pinned
/// to core 0), each crowd, each step of the ladder (loadgen pinned to core
/// 1). A model that has fallen behind its schedule (achieved under 90% of
/// the offered rate, or p99 past 100 ms) is past saturation: its higher
/// steps are not run in that round. Between steps the server is given time
/// to close the last step's connections (a thread or a process each, for
/// some models), so that the next step meets it at rest; a server that has
/// not closed them in that time fails the next step ([`after_the_wait`]).
pub fn sweep(env: &Env, models: &[Model]) -> anyhow::Result<Vec<Vec<Curve>>> {
    let rounds = env.latency_rounds;
    let ladder = ladder(env);
    // samples[model][curve][step]
    let mut samples: Vec<Vec<Vec<Vec<Step>>>> = models
        .iter()
        .map(|m| vec![vec![Vec::new(); ladder.len()]; plans(env, m).len()])
        .collect();
    for round in 0..rounds {
        for (i, m) in models.iter().enumerate() {
            if !runs(env, m) {
                continue;
            }
            for (c, (pass, idle)) in plans(env, m).into_iter().enumerate() {
                let Ok(hold) = held(m, idle, pass.conns) else {
                    progress::skip(ladder.len() as u64);
                    continue;
                };
                let server = start_pinned(env, m, 0);
                let at_rest = testkit::proc::tree_fd_count(server.pid());
                let mut behind = false;
                let how = Curve {
                    conns: pass.conns,
                    pipelined: pass.pipelined,
                    ..Curve::default()
                }
                .mode();
                // The round's p99 at each step, for the log.
                let mut line = format!(
                    "   round {} of {rounds}, {}, {how}, {hold} idle: p99",
                    round + 1,
                    m.name
                );
                for (k, &rate) in ladder.iter().enumerate() {
                    if behind {
                        progress::skip(1);
                        continue;
                    }
                    let waited = wait_for_rest(&server, at_rest);
                    let step = after_the_wait(m.name, rate, waited, || {
                        one(env, m, &server, rate, hold, pass)
                    })?;
                    behind = step.saturated();
                    progress::step(&format!(
                        "latency, round {}: {} at {rate:.0}/s, {how}, {hold} idle",
                        round + 1,
                        m.name
                    ));
                    line.push_str(&if step.failed.is_some() {
                        format!(" {:.0}k failed", rate / 1000.0)
                    } else if step.lost {
                        format!(" {:.0}k lost", rate / 1000.0)
                    } else {
                        format!(" {:.0}k {:.0} µs", rate / 1000.0, step.p99_us)
                    });
                    if let Some(what) = step.late_to() {
                        line.push_str(&format!(" (generator late to {what})"));
                    }
                    samples[i][c][k].push(step);
                }
                progress::say(&line);
            }
        }
    }
    let mut all = Vec::new();
    for (m, per_curve) in models.iter().zip(samples) {
        let mut curves = Vec::new();
        for ((pass, idle), per_step) in plans(env, m).into_iter().zip(per_curve) {
            curves.push(Curve {
                idle,
                held: held(m, idle, pass.conns).unwrap_or(0),
                conns: pass.conns,
                pipelined: pass.pipelined,
                why_not: if runs(env, m) {
                    held(m, idle, pass.conns).err()
                } else {
                    Some("not run with --quick".into())
                },
                steps: per_step.into_iter().filter_map(median_round).collect(),
            });
        }
        if !curves.iter().all(|c| c.steps.is_empty()) {
            progress::say(&format!("== latency against offered load: {}", m.name));
            for c in &curves {
                progress::say(&format!("   {}", c.summary()));
            }
        }
        all.push(curves);
    }
    Ok(all)
}

/// Waits, at most testkit's `TIMEOUT` (10 s), until `server` holds no more
/// descriptors than it did at rest, give or take a few; `Err` says how many
/// it still holds.
fn wait_for_rest(server: &testkit::TestServer, at_rest: usize) -> Result<(), String> {
    let mut open = at_rest;
    let rested = testkit::eventually(|| {
        open = testkit::proc::tree_fd_count(server.pid());
        open <= at_rest + 4
    });
    if rested {
        Ok(())
    } else {
        Err(format!(
            "the last step's connections were still open after {} s \
             ({open} descriptors held, {at_rest} at rest)",
            testkit::TIMEOUT.as_secs()
        ))
    }
}

/// The step at `rate` once the server was waited for: `run` when it came
/// to rest, or else, without running it, a failed step with the reason.
/// Run beside the last step's connections it would measure them too; as a
/// failed step it reads as any other does (`failed` in the report's table,
/// the reason in the log), is the worst of its rounds ([`median_round`]),
/// and ends its round's ladder, since the steps above would meet the same
/// connections.
fn after_the_wait(
    model: &str,
    rate: f64,
    waited: Result<(), String>,
    run: impl FnOnce() -> anyhow::Result<Step>,
) -> anyhow::Result<Step> {
    match waited {
        Ok(()) => run(),
        Err(why) => {
            progress::say(&format!("   {model} at {rate:.0}/s: not run: {why}"));
            Ok(Step {
                offered: rate,
                lost: true,
                failed: Some(format!("not run: {why}")),
                rounds: 1,
                ..Step::default()
            })
        }
    }
}

/// A step's figure from its rounds: the median round by p99, the figure
/// the objective reads (of two, the higher). A lost round (its replies
/// did not all come, or the run failed) has no p99 and counts as the
/// worst. A round in which the generator fell behind its schedule
/// measured this machine's stall (or the generator), not the server: it is
/// set aside where another round kept to the schedule. A step where every
/// round fell behind stays generator-bound. `None` for a step no round ran.
fn median_round(rounds: Vec<Step>) -> Option<Step> {
    let run = rounds.len();
    let mut kept: Vec<Step> = if rounds.iter().all(Step::generator_bound) {
        rounds
    } else {
        rounds
            .into_iter()
            .filter(|r| !r.generator_bound())
            .collect()
    };
    // A lost round's p99 is 0, the default: ordered by it, it would be the best.
    kept.sort_by(|a, b| a.lost.cmp(&b.lost).then(a.p99_us.total_cmp(&b.p99_us)));
    let set_aside = run - kept.len();
    let at = kept.len() / 2;
    let mut step = kept.into_iter().nth(at)?;
    step.rounds = run;
    step.set_aside = set_aside;
    Some(step)
}

/// One step: loadgen's open loop at `rate` against `server`, driven as
/// `pass` says, with `idle` connections held beside the active ones.
fn one(
    env: &Env,
    m: &Model,
    server: &testkit::TestServer,
    rate: f64,
    idle: usize,
    pass: Pass,
) -> anyhow::Result<Step> {
    let (secs, warmup) = if env.quick {
        (0.3, 0.2)
    } else {
        (env.secs, 0.5)
    };
    let mut load = Command::new(env.bin_dir.join("loadgen"));
    load.args(["--addr", &server.addr().to_string(), "--proto", m.proto])
        .args(["--json", "--rate", &rate.to_string()])
        .args([
            "--conns",
            &pass.conns.to_string(),
            "--idle",
            &idle.to_string(),
        ])
        .args([
            "--secs",
            &secs.to_string(),
            "--warmup-secs",
            &warmup.to_string(),
        ]);
    if !pass.pipelined {
        load.args(["--in-flight", "1"]);
    }
    if !m.suffix.is_empty() {
        load.args(["--suffix", m.suffix]);
    }
    pin(&mut load, 1);
    let out = output_within(load, Duration::from_secs_f64(secs + 60.0))?;
    let json = String::from_utf8_lossy(&out.stdout);
    if json.trim().is_empty() {
        // Too far behind to answer every request in the drain, or a
        // connection refused or closed under the load: no latency to
        // report for this step, and the reason goes into the report.
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why.lines().last().unwrap_or("no output").trim();
        progress::say(&format!("   {} at {rate:.0}/s: {why}", m.name));
        return Ok(Step {
            offered: rate,
            lost: true,
            failed: (!why.contains("unanswered")).then(|| why.to_string()),
            ..Step::default()
        });
    }
    let get = |k| json_number(&json, k);
    Ok(Step {
        offered: rate,
        achieved: get("rps"),
        p50_us: get("p50_us"),
        p99_us: get("p99_us"),
        p999_us: get("p999_us"),
        max_us: get("max_us"),
        late_p99_us: get("late_p99_us"),
        late_max_us: get("late_max_us"),
        read_late_p99_us: get("read_late_p99_us"),
        read_late_max_us: get("read_late_max_us"),
        rtt_p50_us: get("rtt_p50_us"),
        bound_rps: get("bound_rps"),
        waited: get("waited"),
        unsent: get("unsent"),
        errors: get("errors"),
        held: get("idle_held") as usize,
        lost: false,
        failed: None,
        rounds: 1,
        set_aside: 0,
    })
}

/// The rates the generator's ceiling is looked for at.
fn generator_rates(env: &Env) -> &'static [f64] {
    if env.quick {
        &[10_000.0, 40_000.0]
    } else {
        &[
            20_000.0, 40_000.0, 60_000.0, 80_000.0, 100_000.0, 130_000.0, 160_000.0, 200_000.0,
            250_000.0,
        ]
    }
}

/// Steps the generator's ceiling may take, for the progress bar.
pub fn generator_steps(env: &Env) -> u64 {
    generator_rates(env).len() as u64
}

/// The generator's own ceiling: the highest rate it keeps to its schedule
/// (its lateness to send and to read, p99, within [`GENERATOR_SLACK_US`])
/// against `m`, the fastest server, with no idle connections, driven as the
/// sweep's own curves are. The rates past the ladder's
/// top are tried too, up to where it falls behind.
pub fn generator_ceiling(env: &Env, m: &Model) -> anyhow::Result<Vec<Step>> {
    let rates = generator_rates(env);
    let server = start_pinned(env, m, 0);
    let mut steps = Vec::new();
    progress::say(&format!(
        "== the generator's own ceiling, against {}",
        m.name
    ));
    for (k, &rate) in rates.iter().enumerate() {
        let step = one(env, m, &server, rate, 0, passes(m)[0])?;
        progress::step(&format!("the generator's ceiling at {rate:.0}/s"));
        progress::say(&format!("   {}", step.summary()));
        let behind = step.generator_bound();
        steps.push(step);
        if behind {
            progress::skip((rates.len() - k - 1) as u64);
            break;
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round that ran at 10 000/s, all of it carried, with this p99.
    fn round(p99_us: f64) -> Step {
        Step {
            offered: 10_000.0,
            achieved: 10_000.0,
            p50_us: p99_us / 2.0,
            p99_us,
            rounds: 1,
            ..Step::default()
        }
    }

    /// A round whose replies did not all come back, as `one` reports it.
    fn lost() -> Step {
        Step {
            offered: 10_000.0,
            lost: true,
            ..Step::default()
        }
    }

    #[test]
    fn a_lost_round_is_the_worst_of_its_step() {
        let step = median_round(vec![round(400.0), lost(), round(2500.0)]).expect("rounds ran");
        assert_eq!((step.p99_us, step.lost), (2500.0, false));
        assert!(!step.meets_objective());
        assert_eq!((step.rounds, step.set_aside), (3, 0));
        // Of two, the higher: the lost one.
        let step = median_round(vec![lost(), round(400.0)]).expect("rounds ran");
        assert!(step.lost && !step.meets_objective());
        // A lost round beside rounds the generator fell behind in is kept,
        // and still the worst.
        let late = Step {
            late_p99_us: 2.0 * GENERATOR_SLACK_US,
            ..round(300.0)
        };
        let step = median_round(vec![late.clone(), lost(), late]).expect("rounds ran");
        assert!(step.lost, "{step:?}");
        assert_eq!(step.set_aside, 2);
    }

    #[test]
    fn a_step_after_a_failed_wait_is_not_run_and_fails() {
        let why = "the last step's connections were still open after 10 s \
                   (40 descriptors held, 12 at rest)";
        let step = after_the_wait("select", 40_000.0, Err(why.into()), || {
            panic!("run beside the last step's connections")
        })
        .expect("a step");
        assert_eq!(step.offered, 40_000.0);
        assert_eq!(step.failed.as_deref(), Some(&*format!("not run: {why}")));
        assert!(step.saturated(), "the ladder stops there");
        assert!(!step.meets_objective());
        assert!(step.summary().contains(why), "{}", step.summary());
        // Among its rounds, it is the worst.
        let median = median_round(vec![round(400.0), step, round(900.0)]).expect("rounds ran");
        assert_eq!(median.p99_us, 900.0);
    }

    #[test]
    fn a_step_after_a_wait_that_held_is_run() {
        let step = after_the_wait("select", 10_000.0, Ok(()), || Ok(round(350.0))).expect("a step");
        assert_eq!((step.p99_us, step.failed), (350.0, None));
    }

    #[test]
    fn a_round_late_to_read_is_generator_bound_as_one_late_to_send() {
        let read = Step {
            read_late_p99_us: 2.0 * GENERATOR_SLACK_US,
            ..round(300.0)
        };
        let send = Step {
            late_p99_us: 2.0 * GENERATOR_SLACK_US,
            ..round(300.0)
        };
        assert_eq!(read.late_to(), Some("read"));
        assert_eq!(send.late_to(), Some("send"));
        let both = Step {
            late_p99_us: 2.0 * GENERATOR_SLACK_US,
            ..read.clone()
        };
        assert_eq!(both.late_to(), Some("send, read"));
        assert_eq!(round(300.0).late_to(), None);
        assert!(!read.meets_objective());
        assert!(
            read.summary().contains("[generator-bound: late to read]"),
            "{}",
            read.summary()
        );
        // Set aside beside a round that kept up, as one late to send is.
        let step = median_round(vec![read, round(700.0), send]).expect("rounds ran");
        assert_eq!((step.p99_us, step.set_aside), (700.0, 2));
    }

    fn model(name: &str) -> Model {
        *crate::model::MODELS
            .iter()
            .find(|m| m.name == name)
            .expect("a model")
    }

    #[test]
    fn the_compared_models_run_pipelined_and_on_many_connections() {
        let one = |conns| Pass {
            conns,
            pipelined: false,
        };
        let piped = |conns| Pass {
            conns,
            pipelined: true,
        };
        assert_eq!(passes(&model("poll")), [one(100), piped(100), one(1000)]);
        assert_eq!(passes(&model("select")), [one(100), piped(100), one(1000)]);
        assert_eq!(passes(&model("io_uring multishot")), [one(100)]);
        assert_eq!(passes(&model("blocking, pool of 8 threads")), [one(8)]);
        // select's idle crowd is what FD_SETSIZE leaves beside the active ones.
        let select = model("select");
        assert_eq!(held(&select, 10_000, 100), Ok(910));
        let full = held(&select, 10_000, 1000).expect_err("no room");
        assert!(full.contains("1000 active connections"), "{full}");
        assert_eq!(held(&model("poll"), 10_000, 1000), Ok(10_000));
        assert_eq!(held(&select, 0, 1000), Ok(0));
    }
}
