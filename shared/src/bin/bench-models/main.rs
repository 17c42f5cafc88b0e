//! Measures every I/O model side by side and writes `BENCHMARKS.md` with
//! charts: the articles' claims as numbers.
//!
//! It builds nothing: build first, then run from the workspace root.
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p shared --bin bench-models             # full run, minutes
//! cargo run --release -p shared --bin bench-models -- --quick  # smoke test, under a minute
//! ```
//!
//! Each server is started fresh on a free loopback port and driven by
//! `loadgen` (which checks every reply); CPU and memory come from `/proc`,
//! system calls from `strace -f -c`, instructions from
//! `valgrind --tool=callgrind`, each as two runs of a fixed request count
//! subtracted so that start-up cancels.

use std::process::ExitCode;

#[cfg(target_os = "linux")]
mod counts;
#[cfg(target_os = "linux")]
mod measure;
#[cfg(target_os = "linux")]
mod report;

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    use clap::Parser;
    shared::cli::exit_with(measure::run(measure::Args::parse()))
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("error: bench-models reads /proc and runs strace and valgrind: it needs Linux");
    ExitCode::FAILURE
}
