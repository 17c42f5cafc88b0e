//! Non-blocking I/O: the busy-polling echo server of article 001 §3 (and of
//! article 002, which names its lists `conn_lst` and `del_lst`).
//!
//! Every socket is non-blocking, so no call waits: `accept`, `read` and
//! `write` either do their work at once or fail with `WouldBlock`. Waiting
//! for data is no longer done by the kernel on our behalf; the program asks
//! again and again, in a loop that never sleeps. Copying the data (the second
//! phase) still happens inside `read`, as with blocking sockets.
//!
//! Each pass of the loop tries `accept`, then visits every connection, reads
//! what has arrived, answers the complete lines and writes what is owed. The
//! cost is the lesson: with nothing to do the loop still spins a core at
//! 100%, and once a second it logs how many empty passes it made ("doing
//! other things", as the article prints). `--idle-sleep-ms` sleeps after an
//! empty pass, like the article's commented-out `time.sleep`, trading that
//! CPU for latency.
//!
//! ```text
//! cargo run -p nonblocking-echo                                      # terminal 1
//! cargo run -p shared --bin hello-client -- --addr 127.0.0.1:8083    # terminal 2
//! ```

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use log::{debug, info};
use shared::limits::Room;
use shared::net::{ACCEPT_BACKOFF, AcceptError, ShortageLog, classify_accept_error};
use shared::{EchoArgs, Outbox, Scratch, answer_received};

#[derive(Parser, Debug)]
#[command(about = "Echo server that polls non-blocking sockets in a busy loop (article 001 §3)")]
struct Args {
    #[command(flatten)]
    echo: EchoArgs,

    /// Sleep this long after a pass that found nothing to do (0: spin; at
    /// most 1000, since every client waits out the sleep)
    #[arg(long, default_value_t = 0, value_parser = shared::cli::in_range(0u64, 1000))]
    idle_sleep_ms: u64,
}

/// Most connections taken per pass, so a burst of new clients cannot starve
/// the ones already connected.
const ACCEPTS_PER_PASS: usize = 128;

fn main() -> ExitCode {
    shared::cli::init_logging();
    let args: Args = shared::cli::parse_args(&[("addr", "127.0.0.1:8083")]);
    shared::cli::exit_with(run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    // The article's `server.setblocking(False)`.
    let listener = shared::net::listen_nonblocking(&args.echo.server)?;
    let idle_sleep = Duration::from_millis(args.idle_sleep_ms);
    let room = shared::limits::descriptor_room(args.echo.server.max_conns, "--max-conns");

    // The article's `r_list`: every connection, visited on every pass.
    let mut r_list: Vec<Conn> = Vec::new();
    // Its `del_rlist`: indices of connections to drop after the pass, since
    // a list cannot be changed while it is being walked.
    let mut del_rlist: Vec<usize> = Vec::new();
    let mut shortage = ShortageLog::default();
    let mut accept_paused_until = Instant::now();
    let mut idle = IdleReport::default();
    // Where every read lands and every reply batch is built.
    let mut scratch = Scratch::new();
    shared::net::announce(&listener)?;

    loop {
        let mut busy = false;

        if Instant::now() >= accept_paused_until {
            let accepted = accept(
                &listener,
                &mut r_list,
                args.echo.max_line,
                &room,
                &mut shortage,
                &mut accept_paused_until,
            )?;
            busy |= accepted > 0;
        }

        for (i, conn) in r_list.iter_mut().enumerate() {
            match visit(conn, &mut scratch) {
                Visit::Busy => busy = true,
                Visit::Idle => {}
                Visit::Done => del_rlist.push(i),
            }
        }
        // Back to front, so each swap_remove moves an element already kept.
        for i in del_rlist.drain(..).rev() {
            let conn = r_list.swap_remove(i);
            info!("{} closed", conn.peer);
        }

        if !busy && !idle_sleep.is_zero() {
            thread::sleep(idle_sleep);
        }
        idle.pass(busy, &r_list);
    }
}

/// One visit, the article's turn at one socket of `r_list`: `recv`, which
/// on a non-blocking socket either returns what has arrived at once or
/// fails with "would block", then `send`, which may take only part.
///
/// The article's pass calls `recv(1024)` and stores `data.upper()` as one
/// reply, then calls `send` once and forgets the rest. Here a read may hold
/// half a line or many, each complete line gets its reply, and what `write`
/// did not take waits in `owed` for the next pass.
fn visit(conn: &mut Conn, scratch: &mut Scratch) -> Visit {
    let mut busy = false;

    // Reading stops while a megabyte of replies is owed, so a client that
    // never reads cannot make us buffer without bound.
    if !conn.closing && !conn.owed.is_full() {
        match conn.stream.read(&mut scratch.input) {
            // Nothing has arrived: the article's `except BlockingIOError`.
            // This is the model: the call did not wait, so the loop moves
            // on to the next socket and asks this one again next pass.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // A signal cut the call short: asked again next pass.
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                debug!("{} dropped: {e}", conn.peer);
                return Visit::Done;
            }
            // Data, or end of stream (0): answered from the loop's buffer.
            // The input is over at the end, or after an over-long line.
            Ok(n) => {
                busy = true;
                scratch.output.clear();
                let (partial, read) = (&mut conn.partial, &scratch.input[..n]);
                conn.closing =
                    answer_received(partial, read, conn.max_line, b"", &mut scratch.output);
                // The article's `send`, at once, straight from the loop's
                // buffer; the socket may take only part, and the rest is
                // owed. While replies are owed already, these wait behind
                // them, so the order stays.
                let replies = &scratch.output[..];
                let mut sent = 0;
                if conn.owed.is_empty() {
                    sent = match send(&mut conn.stream, replies) {
                        Ok(sent) => sent,
                        Err(e) => {
                            debug!("{} write: {e}", conn.peer);
                            return Visit::Done;
                        }
                    };
                }
                if sent < replies.len() {
                    conn.owed.buf_mut().extend_from_slice(&replies[sent..]);
                }
            }
        }
    }

    // What an earlier `send` left, now that the socket may have room.
    if !conn.owed.is_empty() {
        match send(&mut conn.stream, conn.owed.pending()) {
            Ok(sent) => {
                conn.owed.consume(sent);
                busy |= sent > 0;
            }
            Err(e) => {
                debug!("{} write: {e}", conn.peer);
                return Visit::Done;
            }
        }
    }

    if conn.closing && conn.owed.is_empty() {
        shared::net::close_gracefully(&conn.stream);
        return Visit::Done;
    }
    if busy { Visit::Busy } else { Visit::Idle }
}

/// The article's `conn.send(data)` on a non-blocking socket: writes as much
/// of `bytes` as the kernel takes now and returns how much. The caller keeps
/// the rest.
fn send(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            // The send buffer is full: the call did not wait, and what it
            // did not take is tried again on the next pass.
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// One client: its socket and the protocol state around it. Reads land in
/// the loop's [`Scratch`] and replies are written from it, so between
/// passes a connection keeps only an unfinished line and what its socket
/// would not take: usually nothing, though every pass tries every socket.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// The line still arriving, if any: the only input kept.
    partial: Vec<u8>,
    max_line: usize,
    /// Replies the socket has not taken yet, kept across passes. The
    /// article keeps the data to send in its `w_list` dict (`w_list[conn]`)
    /// and sends it whole on the next walk; here replies go at once, and
    /// only what `write` did not take is kept.
    owed: Outbox,
    /// The client half-closed or sent an over-long line: finish writing what
    /// is owed, then close.
    closing: bool,
}

/// What one visit to a connection found.
enum Visit {
    /// Bytes moved.
    Busy,
    /// Nothing was ready.
    Idle,
    /// The connection is over; drop it.
    Done,
}

/// The article's `try: server.accept() except BlockingIOError`, repeated
/// until nobody is waiting. Returns how many clients were taken (served or
/// refused); `Err` only for a broken listener, which ends the server.
///
/// Out of descriptors (EMFILE and the like), the client stays queued, so
/// retrying at once would fail again: `paused_until` tells the loop to
/// leave accepting alone for a while.
fn accept(
    listener: &TcpListener,
    r_list: &mut Vec<Conn>,
    max_line: usize,
    room: &Room,
    shortage: &mut ShortageLog,
    paused_until: &mut Instant,
) -> anyhow::Result<usize> {
    let mut accepted = 0;
    while accepted < ACCEPTS_PER_PASS {
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) => match classify_accept_error(&e) {
                // Nobody waiting: the article's `except BlockingIOError`.
                AcceptError::WouldBlock => break,
                AcceptError::Skip => {
                    debug!("accept: {e}");
                    continue;
                }
                AcceptError::OutOfResources => {
                    shortage.pausing(&e);
                    *paused_until = Instant::now() + ACCEPT_BACKOFF;
                    break;
                }
                // A broken listener (EBADF, EINVAL): no client will come
                // through it again, so waiting would only hide the fault.
                AcceptError::Fatal => return Err(e).context("accept failed"),
            },
        };
        accepted += 1;
        if r_list.len() >= room.conns {
            shortage.refusing(&room.limit);
            shared::net::refuse(&stream);
            continue;
        }
        // An accepted socket does not inherit O_NONBLOCK on Linux.
        if let Err(e) = stream.set_nonblocking(true) {
            debug!("{peer}: {e}");
            continue;
        }
        shortage.clear();
        info!("{peer} connected");
        r_list.push(Conn {
            stream,
            peer,
            partial: Vec::new(),
            max_line,
            owed: Outbox::spill(),
            closing: false,
        });
    }
    Ok(accepted)
}

/// The article's "doing other things" print: once a second, how many
/// passes found nothing to do, and how many connections there are and owe
/// output (its `r_list` and `w_list`). That count of empty passes is the
/// busy loop's cost, made visible.
#[derive(Debug)]
struct IdleReport {
    idle_passes: u64,
    last: Instant,
}

impl Default for IdleReport {
    fn default() -> Self {
        IdleReport {
            idle_passes: 0,
            last: Instant::now(),
        }
    }
}

impl IdleReport {
    fn pass(&mut self, busy: bool, r_list: &[Conn]) {
        if !busy {
            self.idle_passes += 1;
        }
        if self.last.elapsed() >= Duration::from_secs(1) {
            let owing = r_list.iter().filter(|c| !c.owed.is_empty()).count();
            info!(
                "doing other things: {} idle passes in the last second; r_list {}, w_list {owing}",
                self.idle_passes,
                r_list.len()
            );
            self.idle_passes = 0;
            self.last = Instant::now();
        }
    }
}
