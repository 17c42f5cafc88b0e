//! iocp-accept's command line: the io_uring loop and the sizes of its ring
//! and buffers, each refused where the loop is IOCP's.

use clap::Parser;
use shared::EchoArgs;

#[derive(Parser, Debug)]
#[command(
    about = "Echo server on completion-based I/O: IOCP on Windows, io_uring on Linux \
                   (article 004)"
)]
pub struct Args {
    #[command(flatten)]
    pub echo: EchoArgs,

    /// Linux only: one operation per completion, a buffer per pending
    /// receive (IOCP's shape), instead of multishot accept and receive from
    /// a ring of provided buffers; the default on kernels before 6.0
    #[arg(long)]
    pub single_shot: bool,

    /// Linux only, multishot: provided receive buffers of 4 KiB in the ring,
    /// a power of two up to 32768 (default: one for every eight connections
    /// --max-conns allows, from 256 to 4096); all are allocated and touched
    /// at start
    #[arg(long, value_parser = buffers, conflicts_with = "single_shot")]
    pub buffers: Option<u16>,

    /// Linux only: submission queue entries, a power of two up to 4096
    /// (default: --max-conns rounded up to one, from 16 to 1024). A batch
    /// that needs more is submitted in parts. The completion queue holds
    /// one completion per connection, at least twice this and at most 32768
    #[arg(long, value_parser = ring_entries)]
    pub ring_entries: Option<u32>,
}

/// `--ring-entries`: the kernel wants a power of two.
fn ring_entries(s: &str) -> Result<u32, String> {
    power_of_two(s, 4096)
}

/// `--buffers`: the kernel wants a power of two, at most 32768.
fn buffers(s: &str) -> Result<u16, String> {
    power_of_two(s, 32768).map(|n| n as u16)
}

/// A power of two from 1 to `max`, worded as every numeric flag is.
fn power_of_two(s: &str, max: u32) -> Result<u32, String> {
    shared::cli::in_range(1u32, max)(s)
        .ok()
        .filter(|n| n.is_power_of_two())
        .ok_or_else(|| format!("must be a whole number, a power of two from 1 to {max}"))
}

/// Refuses the Linux-only flags where the loop is IOCP's.
pub fn check(_args: &Args, given: &shared::cli::Given) -> Result<(), String> {
    for flag in ["single_shot", "buffers", "ring_entries"] {
        if cfg!(not(target_os = "linux")) && given.has(flag) {
            let name = flag.replace('_', "-");
            return Err(format!("--{name} applies only on Linux (io_uring)"));
        }
    }
    Ok(())
}
