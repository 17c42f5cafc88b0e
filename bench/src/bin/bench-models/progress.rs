//! Where the run is: on a terminal, a bar over the whole run (step k of N,
//! the time left, as `indicatif` draws it) with the log lines printed above
//! it; elsewhere (a file, CI) the plain log lines alone.

use std::io::IsTerminal;
use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressStyle};

static BAR: OnceLock<Option<ProgressBar>> = OnceLock::new();

/// Starts the bar for a run of `steps` steps, if stderr is a terminal.
pub fn plan(steps: u64) {
    BAR.get_or_init(|| {
        std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(steps);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] step {pos} of {len}, {eta} left: {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        })
    });
}

/// One step done; `what` says what comes next.
pub fn step(what: &str) {
    if let Some(Some(bar)) = BAR.get() {
        bar.set_message(what.to_string());
        bar.inc(1);
    }
}

/// Steps planned that will not run (a model past saturation).
pub fn skip(steps: u64) {
    if let Some(Some(bar)) = BAR.get() {
        bar.inc(steps);
    }
}

/// A log line: above the bar on a terminal, plain on stderr elsewhere.
pub fn say(line: &str) {
    match BAR.get() {
        Some(Some(bar)) => bar.println(line),
        _ => eprintln!("{line}"),
    }
}

/// Ends the bar.
pub fn finish() {
    if let Some(Some(bar)) = BAR.get() {
        bar.finish_and_clear();
    }
}
