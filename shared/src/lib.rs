//! What the io-models servers share at run time and what is not the lesson:
//! line framing, the echo reply, socket set-up, command-line arguments and
//! logging. Each server's event loop stays in its own crate; the test harness
//! is `testkit`, and the measuring tools are `bench`.

pub mod cli;
pub mod echo;
pub mod fast;
pub mod limits;
pub mod line;
pub mod net;

pub use cli::{EchoArgs, ServerArgs};
pub use echo::{
    Outbox, Scratch, answer_lines, answer_partial_at_end, answer_read, answer_received,
    answer_rest, reply_into,
};
pub use line::{LineBuffer, LineTooLong};
