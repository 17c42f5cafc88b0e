//! Measures every I/O model side by side and writes `BENCHMARKS.md` with
//! charts: the articles' claims as numbers.
//!
//! It builds nothing: build first, then run from the workspace root.
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p bench --bin bench-models             # full run, minutes
//! cargo run --release -p bench --bin bench-models -- --quick  # smoke test, a minute or two
//! cargo run --release -p bench --bin bench-models -- --render-from results.json --out /tmp/r
//! ```
//!
//! Each server is started fresh on a free loopback port and driven by
//! `loadgen` (which checks every reply); CPU and memory come from `/proc`,
//! system calls from `strace -f -c`, instructions from
//! `valgrind --tool=callgrind`, each as a long run of a fixed request count
//! less a run of one round per connection, so that start-up cancels.
//!
//! The files, and the one way data flows between them:
//!
//! - `model.rs`: the models and the run's settings (data);
//! - `results.rs`: what is measured (data);
//! - `drive.rs`: starting servers and programs, with deadlines;
//! - `measure.rs`: throughput, latency, CPU and memory, into `Results`;
//! - `scale.rs`: every model up to the descriptor ceiling, into `Results`;
//! - `latency.rs`: latency against offered load (loadgen's open loop), with
//!   and without an idle crowd, into `Results`;
//! - `counts.rs`: system calls and instructions per request, into `Results`;
//! - `progress.rs`: where the run is, on a terminal;
//! - `saved.rs`: the run's results as JSON (`results.json`), and back;
//! - `report.rs`: `Results` into BENCHMARKS.md and the charts.
//!
//! `main` runs the measuring files, saves what they found to
//! `results.json`, and renders the report from that file (`--render-from`
//! renders it again without measuring); none of them imports another of
//! the three.

use std::process::ExitCode;

#[cfg(target_os = "linux")]
mod counts;
#[cfg(target_os = "linux")]
mod drive;
#[cfg(target_os = "linux")]
mod latency;
#[cfg(target_os = "linux")]
mod measure;
#[cfg(target_os = "linux")]
mod model;
#[cfg(target_os = "linux")]
mod progress;
#[cfg(target_os = "linux")]
mod report;
#[cfg(target_os = "linux")]
mod results;
#[cfg(target_os = "linux")]
mod saved;
#[cfg(target_os = "linux")]
mod scale;

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    use clap::Parser;
    shared::cli::exit_with(linux::run(linux::Args::parse()))
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("error: bench-models reads /proc and runs strace and valgrind: it needs Linux");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
mod linux {
    use std::path::PathBuf;

    use anyhow::{Context, bail};
    use testkit::raise_nofile_limit;

    use crate::model::{Env, Host, MODELS};
    use crate::saved::{self, Saved};
    use crate::{counts, latency, measure, progress, report, scale};

    #[derive(clap::Parser, Debug, Clone)]
    #[command(
        about = "Measure every io-models server side by side; write BENCHMARKS.md and charts"
    )]
    pub struct Args {
        /// Smoke test: fewer, shorter points and no strace/valgrind counts
        #[arg(long)]
        pub quick: bool,
        /// Where BENCHMARKS.md and bench/charts/*.svg go (default: the workspace
        /// root, or target/bench-quick with --quick)
        #[arg(long)]
        pub out: Option<PathBuf>,
        /// Seconds per throughput point, after a warm-up (default 2, quick 0.3)
        #[arg(long)]
        pub secs: Option<f64>,
        /// Measure only the models whose name starts with one of these,
        /// comma-separated (e.g. `select,poll`: select, selectors and poll);
        /// the report then covers only them (default: every model)
        #[arg(long, value_delimiter = ',')]
        pub only: Vec<String>,
        /// Only the per-request counts (system calls and instructions),
        /// printed, with no report written: for comparing two builds
        #[arg(long)]
        pub counts_only: bool,
        /// Where the server binaries and loadgen are (default: beside this
        /// program); with --counts-only, an older build can be counted
        #[arg(long)]
        pub bin_dir: Option<PathBuf>,
        /// Only the latency sweep (latency against offered load) and the
        /// generator's own ceiling: their section of BENCHMARKS.md is
        /// replaced in the file already there, and their chart redrawn
        #[arg(long)]
        pub latency_only: bool,
        /// Rounds of the latency sweep, a step being their median (default
        /// 3, quick 1)
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        pub latency_rounds: Option<u16>,
        /// Measure nothing: render BENCHMARKS.md and the charts into --out
        /// from a results.json an earlier run wrote (with --latency-only,
        /// its section replaced in the BENCHMARKS.md already there)
        #[arg(long, value_name = "PATH")]
        pub render_from: Option<PathBuf>,
    }

    /// The report from a saved run alone, into `out`.
    fn render(saved: &Saved, out: &std::path::Path) -> anyhow::Result<()> {
        let (env, all, (fastest, generator)) = saved.unpack()?;
        if saved.latency_only {
            report::splice_latency(out, &env, &all, (&fastest, &generator))
                .context("writing the latency section")
        } else {
            report::write(out, &env, &all, (&fastest, &generator)).context("writing the report")
        }
    }

    /// `results.json` written into `out`, and the report rendered from
    /// that file, as `--render-from` would.
    fn save_and_render(saved: &Saved, out: &std::path::Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(out)?;
        let path = out.join(saved.file_name());
        saved.write(&path)?;
        render(&Saved::read(&path)?, out)
    }

    /// This machine, as the report describes it.
    fn host() -> Host {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let mem_kib = read("/proc/meminfo")
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        Host {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            mem_kib,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            pinned: crate::drive::pinning(),
            nofile_hard: shared::limits::raise_descriptor_limit().map_or(0, |l| l.hard),
            scale_ceiling: scale::ceiling(),
        }
    }

    pub fn run(args: Args) -> anyhow::Result<()> {
        if let Some(path) = &args.render_from {
            let saved = Saved::read(path)?;
            let out = args
                .out
                .clone()
                .context("--render-from needs --out, the folder to write into")?;
            render(&saved, &out)?;
            eprintln!(
                "rendered {} from {}",
                out.join("BENCHMARKS.md").display(),
                path.display()
            );
            return Ok(());
        }
        let bin_dir = match args.bin_dir.clone() {
            Some(dir) => dir,
            None => std::env::current_exe()?
                .parent()
                .context("no directory for this program")?
                .to_path_buf(),
        };
        let models: Vec<_> = MODELS
            .iter()
            .filter(|m| {
                args.only.is_empty() || args.only.iter().any(|w| m.name.starts_with(w.as_str()))
            })
            .copied()
            .collect();
        if models.is_empty() {
            bail!(
                "--only {}: no model's name contains any of these",
                args.only.join(",")
            );
        }
        for m in &models {
            if !bin_dir.join(m.bin).exists() || !bin_dir.join("loadgen").exists() {
                bail!(
                    "{} not found beside this program in {}: build first with \
                     `cargo build --release --workspace`",
                    m.bin,
                    bin_dir.display()
                );
            }
        }
        let root = bench::workspace_root(&bin_dir);
        let out = args.out.clone().unwrap_or_else(|| {
            if args.quick {
                root.join("target/bench-quick")
            } else {
                root.clone()
            }
        });
        raise_nofile_limit(65_536);
        let env = Env {
            bin_dir,
            secs: args.secs.unwrap_or(if args.quick { 0.3 } else { 2.0 }),
            quick: args.quick,
            models,
            latency_rounds: args
                .latency_rounds
                .map_or(if args.quick { 1 } else { 3 }, usize::from),
            host: host(),
        };
        if args.counts_only {
            for model in &env.models {
                progress::say(&format!("== {}", model.name));
                counts::measure(&env, model)?;
            }
            return Ok(());
        }
        // The fastest server, for the generator's own ceiling.
        let fastest = env
            .models
            .iter()
            .find(|m| m.name == "io_uring multishot")
            .unwrap_or(&env.models[0]);
        if args.latency_only {
            progress::plan(latency::planned(&env) + latency::generator_steps(&env));
            let curves = latency::sweep(&env, &env.models)?;
            let generator = latency::generator_ceiling(&env, fastest)?;
            progress::finish();
            let all: Vec<_> = env
                .models
                .iter()
                .zip(curves)
                .map(|(m, latency)| {
                    (
                        *m,
                        crate::results::Results {
                            latency,
                            ..Default::default()
                        },
                    )
                })
                .collect();
            let saved = Saved::new(&env, &all, (fastest, &generator), true);
            save_and_render(&saved, &out)?;
            eprintln!(
                "wrote {} and replaced the latency section of {}",
                out.join(saved::LATENCY_FILE).display(),
                out.join("BENCHMARKS.md").display()
            );
            return Ok(());
        }
        let counted = if env.quick {
            0
        } else {
            env.models.len() as u64
        };
        progress::plan(
            measure::planned(&env)
                + scale::planned(&env)
                + latency::planned(&env)
                + latency::generator_steps(&env)
                + counted,
        );
        let mut all = measure::grid(&env)?;
        let models: Vec<_> = all.iter().map(|(m, _)| *m).collect();
        let counts = scale::counts(&env);
        for ((_, r), points) in all.iter_mut().zip(scale::sweep(&env, &models)?) {
            r.idle = if points.is_empty() {
                counts.iter().map(|&n| (n, None)).collect()
            } else {
                points
                    .iter()
                    .map(|p| (p.asked, (p.held >= p.asked).then_some(p.active)))
                    .collect()
            };
            r.scale = points;
        }
        for ((_, r), curves) in all.iter_mut().zip(latency::sweep(&env, &models)?) {
            r.latency = curves;
        }
        let generator = latency::generator_ceiling(&env, fastest)?;
        for (model, results) in &mut all {
            progress::say(&format!("== {}", model.name));
            measure::idle_and_memory(&env, model, results);
            if !env.quick {
                progress::step(&format!("counts: {}", model.name));
                results.counts = counts::measure(&env, model)?;
                if model.proto == "http" {
                    results.wrk = measure::wrk(&env, model)?;
                }
            }
        }
        progress::finish();
        let errors: f64 = all
            .iter()
            .flat_map(|(_, r)| {
                r.grid
                    .iter()
                    .filter_map(|(_, p)| *p)
                    .chain(r.idle.iter().filter_map(|(_, p)| *p))
            })
            .map(|p| p.errors)
            .chain(all.iter().flat_map(|(_, r)| {
                r.latency
                    .iter()
                    .flat_map(|c| c.steps.iter().map(|s| s.errors))
            }))
            .sum();
        save_and_render(&Saved::new(&env, &all, (fastest, &generator), false), &out)?;
        eprintln!(
            "wrote {} and {}",
            out.join(saved::FILE).display(),
            out.join("BENCHMARKS.md").display()
        );
        if errors > 0.0 {
            bail!("{errors} replies did not match");
        }
        Ok(())
    }
}
