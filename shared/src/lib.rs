//! What the io-models servers share and what is not the lesson: line framing,
//! the echo reply, socket set-up, command-line arguments, and the harness the
//! black-box tests use. Each server's event loop stays in its own crate.

pub mod cli;
pub mod echo;
pub mod line;
pub mod net;
pub mod testing;

pub use cli::{EchoArgs, ServerArgs};
pub use echo::{Outbox, answer_lines, answer_rest, reply_into};
pub use line::{LineBuffer, LineTooLong};
