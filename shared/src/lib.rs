//! What the io-models servers share at run time and what is not the lesson:
//! line framing, the echo reply, socket set-up, command-line arguments and
//! logging. Each server's event loop stays in its own crate; the test harness
//! is `testkit`, and the measuring tools are `bench`.
//!
//! The echo protocol is behind features (Cargo.toml says why): `echo`, the
//! reply and the framing of reads that land in a loop's buffer, and `line`,
//! a connection's own line buffer. A server takes only those it speaks.

pub mod cli;
#[cfg(feature = "echo")]
pub mod echo;
#[cfg(feature = "echo")]
pub mod fast;
pub mod limits;
#[cfg(feature = "line")]
pub mod line;
pub mod net;

#[cfg(feature = "echo")]
pub use cli::EchoArgs;
pub use cli::ServerArgs;
#[cfg(feature = "echo")]
pub use echo::{
    LineTooLong, Outbox, Scratch, answer_partial_at_end, answer_read, answer_received, reply_into,
};
#[cfg(feature = "line")]
pub use echo::{answer_lines, answer_rest};
#[cfg(feature = "line")]
pub use line::LineBuffer;
