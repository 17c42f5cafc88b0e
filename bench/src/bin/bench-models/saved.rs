//! One run's results as JSON: `results.json` in the output folder, every
//! point measured, with the settings and the machine the report describes.
//! The report is rendered from this file alone (`--render-from`), the same
//! way after a run as long after it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::model::{Env, Host, MODELS, Model};
use crate::results::{Results, Step};

/// The file's name in the output folder.
pub const FILE: &str = "results.json";
/// With `--latency-only`, which must not overwrite a full run's file.
pub const LATENCY_FILE: &str = "results-latency.json";

/// Everything a report is made of.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Saved {
    pub host: Host,
    pub secs: f64,
    pub quick: bool,
    pub latency_rounds: usize,
    /// Only the latency sweep ran (`--latency-only`): its section replaces
    /// the one in the BENCHMARKS.md already in the output folder.
    pub latency_only: bool,
    /// Each model by its name in the report, and what was measured of it.
    pub models: Vec<(String, Results)>,
    /// The generator's own ceiling: the model it was measured against, and
    /// its steps.
    pub generator: (String, Vec<Step>),
}

impl Saved {
    pub fn new(
        env: &Env,
        all: &[(Model, Results)],
        (fastest, generator): (&Model, &[Step]),
        latency_only: bool,
    ) -> Self {
        Self {
            host: env.host.clone(),
            secs: env.secs,
            quick: env.quick,
            latency_rounds: env.latency_rounds,
            latency_only,
            models: all
                .iter()
                .map(|(m, r)| (m.name.to_string(), r.clone()))
                .collect(),
            generator: (fastest.name.to_string(), generator.to_vec()),
        }
    }

    /// The file's name in the output folder: [`FILE`] or [`LATENCY_FILE`].
    pub fn file_name(&self) -> &'static str {
        if self.latency_only {
            LATENCY_FILE
        } else {
            FILE
        }
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let json =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&json)
            .with_context(|| format!("{}: not a bench-models results file", path.display()))
    }

    /// The run's settings, its models and their results, its generator's
    /// model and steps, as the report takes them; an error names a model
    /// this build does not know.
    #[allow(clippy::type_complexity)]
    pub fn unpack(&self) -> anyhow::Result<(Env, Vec<(Model, Results)>, (Model, Vec<Step>))> {
        let model = |name: &str| {
            MODELS
                .iter()
                .find(|m| m.name == name)
                .copied()
                .with_context(|| {
                    format!("the results name a model this build does not have: {name:?}")
                })
        };
        let all = self
            .models
            .iter()
            .map(|(name, r)| Ok((model(name)?, r.clone())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let env = Env {
            bin_dir: PathBuf::new(),
            secs: self.secs,
            quick: self.quick,
            models: all.iter().map(|(m, _)| *m).collect(),
            latency_rounds: self.latency_rounds,
            host: self.host.clone(),
        };
        let generator = (model(&self.generator.0)?, self.generator.1.clone());
        Ok((env, all, generator))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Curve, Point};

    /// A small run: two models, one grid point each, a latency curve with
    /// and without the crowd in both ways of sending, and the generator.
    fn small() -> Saved {
        let step = |offered: f64, achieved: f64, p99_us: f64| Step {
            offered,
            achieved,
            p50_us: p99_us / 3.0,
            p99_us,
            p999_us: p99_us * 2.0,
            max_us: p99_us * 4.0,
            late_p99_us: 20.0,
            late_max_us: 90.0,
            read_late_p99_us: 15.0,
            read_late_max_us: 70.0,
            rtt_p50_us: 60.0,
            bound_rps: 100.0 / 60e-6,
            rounds: 1,
            ..Step::default()
        };
        let curve = |idle: usize, conns: usize, pipelined: bool, carried: f64| Curve {
            idle,
            held: idle,
            conns,
            pipelined,
            why_not: None,
            steps: vec![
                step(10_000.0, 10_000.0, 300.0),
                step(40_000.0, carried, 2500.0),
            ],
        };
        let point = Point {
            rps: 50_000.0,
            p50_us: 100.0,
            p99_us: 400.0,
            ..Point::default()
        };
        let results = |carried: f64, pipelined: bool| Results {
            grid: vec![((10, 1), Some(point)), ((10, 16), None)],
            idle: vec![(1000, Some(point))],
            latency: [
                (0, false, 40_000.0),
                (1000, false, carried),
                (0, true, 40_000.0),
                (1000, true, 40_000.0),
            ]
            .into_iter()
            .filter(|&(_, p, _)| pipelined || !p)
            .map(|(idle, p, carried)| curve(idle, 100, p, carried))
            .collect(),
            rss_per_conn_kib: 12.5,
            rss_spoken_kib: Some(14.0),
            rss_conns: 1000,
            ..Results::default()
        };
        Saved {
            host: Host {
                cpu: "a test CPU".into(),
                cores: 2,
                mem_kib: 8 << 20,
                kernel: "6.1.0".into(),
                pinned: true,
                nofile_hard: 20_000,
                scale_ceiling: 19_000,
            },
            secs: 0.3,
            quick: true,
            latency_rounds: 1,
            latency_only: false,
            models: vec![
                ("poll".into(), results(12_400.0, true)),
                ("selectors (polling, epoll)".into(), results(40_000.0, true)),
            ],
            generator: (
                "selectors (polling, epoll)".into(),
                vec![step(10_000.0, 10_000.0, 200.0)],
            ),
        }
    }

    fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut all = vec![(
            dir.join("BENCHMARKS.md"),
            std::fs::read(dir.join("BENCHMARKS.md")).expect("BENCHMARKS.md written"),
        )];
        let mut charts: Vec<_> = std::fs::read_dir(dir.join("bench/charts"))
            .expect("charts written")
            .map(|e| e.expect("a chart").path())
            .collect();
        charts.sort();
        for c in charts {
            let bytes = std::fs::read(&c).expect("a chart read");
            all.push((c, bytes));
        }
        all
    }

    #[test]
    fn a_saved_run_renders_the_same_report_twice() {
        let base = std::env::temp_dir().join(format!("bench-models-saved-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("a temporary folder");
        let path = base.join(FILE);
        small().write(&path).expect("saved");
        let mut rendered = Vec::new();
        for n in ["a", "b"] {
            let out = base.join(n);
            let (env, all, (fastest, generator)) = Saved::read(&path)
                .expect("read back")
                .unpack()
                .expect("known models");
            crate::report::write(&out, &env, &all, (&fastest, &generator)).expect("rendered");
            rendered.push(files(&out));
        }
        let md = String::from_utf8(rendered[0][0].1.clone()).expect("UTF-8");
        assert!(md.starts_with("# Benchmarks\n"), "{md}");
        assert!(
            md.contains("Machine: a test CPU, 2 cores, 8 GiB, Linux 6.1.0"),
            "{md}"
        );
        assert!(md.contains("## Latency against offered load"), "{md}");
        assert!(
            md.contains("12400"),
            "the carried rate is read from the file: {md}"
        );
        assert!(
            rendered[0]
                .iter()
                .any(|(p, _)| p.ends_with("carried-offered.svg")),
            "the carried chart"
        );
        assert_eq!(rendered[0].len(), rendered[1].len());
        for ((pa, a), (pb, b)) in rendered[0].iter().zip(&rendered[1]) {
            assert_eq!(pa.file_name(), pb.file_name());
            assert!(a == b, "{} differs between two renderings", pa.display());
        }
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn an_unknown_model_is_named() {
        let mut saved = small();
        saved.models[0].0 = "no such model".into();
        let err = saved.unpack().expect_err("unknown").to_string();
        assert!(err.contains("\"no such model\""), "{err}");
    }
}
