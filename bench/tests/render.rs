//! `bench-models --render-from`: the report rendered from a saved run
//! alone, with nothing measured, the same bytes each time.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A small saved run: poll and selectors, their latency curves one in
/// flight and pipelined, with and without the crowd.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results-small.json")
}

fn render(out: &Path) -> String {
    let run = Command::new(env!("CARGO_BIN_EXE_bench-models"))
        .arg("--render-from")
        .arg(fixture())
        .arg("--out")
        .arg(out)
        .output()
        .expect("bench-models runs");
    assert!(
        run.status.success(),
        "bench-models failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read_to_string(out.join("BENCHMARKS.md")).expect("BENCHMARKS.md written")
}

#[test]
fn a_saved_run_renders_alone_and_the_same_twice() {
    let base = std::env::temp_dir().join(format!("bench-render-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (a, b) = (render(&base.join("a")), render(&base.join("b")));
    assert!(a == b, "two renderings of one file differ");
    for chart in [
        "latency-offered.svg",
        "carried-offered.svg",
        "throughput.svg",
    ] {
        let read = |d: &str| std::fs::read(base.join(d).join("bench/charts").join(chart));
        let (ca, cb) = (read("a").expect("a chart"), read("b").expect("a chart"));
        assert!(ca == cb, "{chart} differs between two renderings");
    }
    // The machine and the figures are the file's, not this machine's.
    assert!(
        a.contains("Machine: a test CPU, 2 cores, 8 GiB, Linux 6.1.0"),
        "{a}"
    );
    assert!(
        a.contains("| poll | 1 in flight, 100 conns | 40000 | 40000 | 12400 | -69% |"),
        "{a}"
    );
    let prose = a.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        prose.contains("poll carried 12400 replies/s beside 1000 idle connections"),
        "{a}"
    );
    assert!(
        prose.contains("so pipelining hides 69 points of the loss"),
        "{a}"
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_file_that_is_not_a_saved_run_is_named() {
    let base = std::env::temp_dir().join(format!("bench-render-bad-{}", std::process::id()));
    std::fs::create_dir_all(&base).expect("a temporary folder");
    let bad = base.join("results.json");
    std::fs::write(&bad, "{\"models\": 3}").expect("written");
    let run = Command::new(env!("CARGO_BIN_EXE_bench-models"))
        .arg("--render-from")
        .arg(&bad)
        .arg("--out")
        .arg(base.join("out"))
        .output()
        .expect("bench-models runs");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(err.contains("not a bench-models results file"), "{err}");
    assert!(!base.join("out/BENCHMARKS.md").exists());
    let _ = std::fs::remove_dir_all(&base);
}
