//! What the select loop and the poll loop share: a connection, taking the
//! next client, and the `recv` and `send` on a ready socket. Only the
//! waiting differs between the two, and that is all `select.rs` and
//! `poll.rs` hold.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;
use log::{debug, info};
use shared::net::{ACCEPT_BACKOFF, AcceptError, ShortageLog, classify_accept_error};
use shared::{Outbox, Scratch, answer_received};

/// The article's `select.select(rlist, wlist, [], 0.5)` timeout; the poll
/// loop waits as long.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// One client. Reads land in the loop's [`Scratch`], and replies are
/// written from it, so between events a connection keeps only an
/// unfinished line and what its socket would not take: usually nothing.
pub struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// The line still arriving, if any: the only input kept.
    partial: Vec<u8>,
    /// Replies owed, under the article's name for them (`wdata[sock]`;
    /// the other servers call this `owed`). Unlike the article's one
    /// `send(wdata[sock])`, what the kernel does not take stays here.
    wdata: Outbox,
    max_line: usize,
    /// End of input or an over-long line: write what is owed, then close.
    closing: bool,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, max_line: usize) -> Conn {
        Conn {
            stream,
            peer,
            partial: Vec::new(),
            wdata: Outbox::spill(),
            max_line,
            closing: false,
        }
    }
}

/// What a connection waits for after its turn.
pub enum Next {
    /// Keep it: watch it for reading, writing, or both.
    Wait { read: bool, write: bool },
    /// It is finished (closed gracefully, or broken): forget it.
    Done,
}

/// Serves a socket the kernel reported ready: reads if it may, answers,
/// writes, and says what to watch it for next.
pub fn serve(conn: &mut Conn, scratch: &mut Scratch) -> Next {
    match recv_and_send(conn, scratch) {
        Ok(true) => Next::Wait {
            // A client owed 1 MiB is not read until it drains.
            read: !conn.closing && !conn.wdata.is_full(),
            // The article's `wlist.append(sock)`, but only while the
            // kernel has not taken everything.
            write: !conn.wdata.is_empty(),
        },
        Ok(false) => {
            shared::net::close_gracefully(&conn.stream);
            info!("{} closed", conn.peer);
            Next::Done
        }
        Err(e) => {
            debug!("{} dropped: {e}", conn.peer);
            Next::Done
        }
    }
}

/// The article's `data = sock.recv(1024)` and `sock.send(wdata[sock])`:
/// reads what has arrived, answers every complete line, and writes the
/// replies at once. Returns whether the connection stays open.
///
/// The article's loop stores `data.upper()` for `recv(1024)` and sends it on
/// the next turn, when `select` says the socket is writable: one `recv`
/// taken for one message, and an extra `select` per reply. Here lines are
/// framed across reads, and replies are written straight away: a socket is
/// nearly always writable, so `wlist` is only for what the kernel would not
/// take yet.
fn recv_and_send(conn: &mut Conn, scratch: &mut Scratch) -> io::Result<bool> {
    if !conn.closing && !conn.wdata.is_full() {
        match conn.stream.read(&mut scratch.input) {
            // Data, or end of stream (0); the input is over at the end, or
            // after an over-long line.
            Ok(n) => {
                scratch.output.clear();
                let (partial, read) = (&mut conn.partial, &scratch.input[..n]);
                conn.closing =
                    answer_received(partial, read, conn.max_line, b"", &mut scratch.output);
                // Sent at once, straight from the loop's buffer; what the
                // kernel does not take is owed in `wdata`. While replies
                // are owed already, these wait behind them, so the order
                // stays.
                let replies = &scratch.output[..];
                let mut sent = 0;
                if conn.wdata.is_empty() {
                    sent = send(&mut conn.stream, replies)?;
                }
                if sent < replies.len() {
                    conn.wdata.buf_mut().extend_from_slice(&replies[sent..]);
                }
            }
            // Reported only as writable, or readable no longer (`select`
            // can report a socket whose data is gone by the read): the
            // non-blocking read says so instead of stopping the loop.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // What an earlier send left, now that `select` says there is room.
    if !conn.wdata.is_empty() {
        let sent = send(&mut conn.stream, conn.wdata.pending())?;
        conn.wdata.consume(sent);
    }
    Ok(!(conn.closing && conn.wdata.is_empty()))
}

/// The article's `sock.send(wdata[sock])` on a non-blocking socket: writes
/// as much of `bytes` as the kernel takes now and returns how much. The
/// caller keeps the rest in `wdata`.
fn send(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            // The send buffer is full: the rest waits in `wdata`, and
            // `serve` has the socket watched for writing (`wlist`, or
            // `POLLOUT` under `--poll`) until there is room.
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// The article's `conn, addr = sock.accept()`, once: the next waiting
/// client, already non-blocking, or `None` when nobody is left to take.
/// `Err` only for a broken listener, which ends the server.
///
/// Out of descriptors (EMFILE and the like), the client stays queued and
/// the listener readable, so watching it would spin: `paused_until` tells
/// the loop to leave the listener out of its wait for a while.
pub fn accept_next(
    listener: &TcpListener,
    shortage: &mut ShortageLog,
    paused_until: &mut Option<Instant>,
) -> anyhow::Result<Option<(TcpStream, SocketAddr)>> {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) => match classify_accept_error(&e) {
                AcceptError::WouldBlock => return Ok(None),
                AcceptError::Skip => {
                    debug!("accept: {e}");
                    continue;
                }
                AcceptError::OutOfResources => {
                    shortage.pausing(&e);
                    *paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return Ok(None);
                }
                // A broken listener (EBADF, EINVAL) stays readable and never
                // yields a client again: pausing would retry it for ever.
                AcceptError::Fatal => return Err(e).context("accept failed"),
            },
        };
        if let Err(e) = stream.set_nonblocking(true) {
            debug!("{peer}: {e}");
            continue;
        }
        return Ok(Some((stream, peer)));
    }
}
