//! The portable selector: the `selectors` echo server of article 001 §7.
//!
//! Python's `selectors.DefaultSelector` picks the best readiness mechanism of
//! the platform (epoll on Linux, kqueue on macOS and the BSDs, and so on) and
//! lets each registered socket carry data of the program's choosing. The
//! article stores a callback there: `register(server, EVENT_READ, accept)`,
//! `register(conn, EVENT_READ, read)`, and the loop is just
//! `for key, mask in sel.select(): key.data(key.fileobj, mask)`.
//!
//! Here the `polling` crate plays `DefaultSelector` (epoll, kqueue, event
//! ports, or IOCP on Windows), in level-triggered mode as Python's selectors
//! are: an event repeats while data is waiting. [`Selector`] keeps the key
//! table — `register`, `modify`, `unregister` — and each key's `data` is the
//! function to call. As with `select`, the process blocks only in the wait
//! for readiness; `read` then copies without waiting. Unlike `select`, there
//! is no descriptor limit and no set to copy each turn.
//!
//! Each reply is the line upper-cased with `_SB` before the newline, as the
//! article's `data.upper() + b'_SB'`.
//!
//! ```text
//! cargo run -p selectors-echo                                  # terminal 1
//! cargo run -p shared --bin client -- --addr 127.0.0.1:8088    # terminal 2
//! ```

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use log::{debug, info};
use polling::{Event, Events, PollMode, Poller};
use shared::limits::Room;
use shared::net::{ACCEPT_BACKOFF, AcceptError, ShortageLog, classify_accept_error};
use shared::{EchoArgs, Outbox, Scratch, answer_received};
use slab::Slab;

#[derive(Parser, Debug)]
#[command(
    about = "Echo server on the platform's best selector, callbacks stored per socket \
                   (article 001 §7)"
)]
struct Args {
    #[command(flatten)]
    echo: EchoArgs,
}

/// What the article appends to every reply.
const SUFFIX: &[u8] = b"_SB";

/// A key's `data`: the function to call when its socket is ready.
///
/// A plain function pointer is the closest thing to Python's function
/// object: data that happens to be code. It needs to capture nothing,
/// because it is handed the server and the key. A boxed `FnMut` would have
/// to capture the table it is stored in; an enum would put the dispatch back
/// into a `match` in the loop, which is what storing callbacks avoids.
/// An error ends the server: only a broken listener makes one.
type Callback = fn(&mut Server, usize, Mask) -> anyhow::Result<()>;

fn main() -> ExitCode {
    shared::cli::init_logging();
    let args: Args = shared::cli::parse_args(&[("addr", "127.0.0.1:8088")]);
    shared::cli::exit_with(run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    let listener = shared::net::listen_nonblocking(&args.echo.server)?;
    let mut sel = Selector::new().context("cannot create the selector")?;
    // The article's `sel.register(server_fileobj, EVENT_READ, accept)`.
    let listener_key = sel.register(FileObj::Listener(listener), EVENT_READ, accept)?;
    let mut server = Server {
        sel,
        listener_key,
        live: 0,
        room: shared::limits::descriptor_room(args.echo.server.max_conns, "--max-conns"),
        max_line: args.echo.max_line,
        accept_paused_until: None,
        shortage: ShortageLog::default(),
        scratch: Scratch::new(),
    };
    let mut events = Events::new();
    // Ready only now that the poller exists and watches the listener.
    if let FileObj::Listener(listener) = &server.sel.keys[listener_key].fileobj {
        shared::net::announce(listener)?;
    }

    loop {
        let timeout = server
            .accept_paused_until
            .map(|until| until.saturating_duration_since(Instant::now()));
        events.clear();
        match server.sel.poller.wait(&mut events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("waiting for events failed"),
        }
        server.resume_accepting_if_due()?;

        // The article's `for key, mask in sel.select(): key.data(key.fileobj, mask)`.
        for event in events.iter() {
            // An earlier callback in this batch may have closed it.
            let Some(key) = server.sel.keys.get(event.key) else {
                continue;
            };
            let callback = key.data;
            let mask = Mask {
                read: event.readable,
                write: event.writable,
            };
            callback(&mut server, event.key, mask)?;
        }
    }
}

/// The listener's callback, the article's `accept`: take every waiting
/// client and register it with the callback [`read`]. `Err` only for a
/// broken listener.
fn accept(server: &mut Server, key: usize, _mask: Mask) -> anyhow::Result<()> {
    loop {
        let FileObj::Listener(listener) = &server.sel.keys[key].fileobj else {
            unreachable!("accept is only registered for the listener");
        };
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) => match classify_accept_error(&e) {
                AcceptError::WouldBlock => return Ok(()),
                AcceptError::Skip => {
                    debug!("accept: {e}");
                    continue;
                }
                AcceptError::OutOfResources => {
                    server.shortage.pausing(&e);
                    server.pause_accepting();
                    return Ok(());
                }
                // A broken listener (EBADF, EINVAL) stays ready and never
                // yields a client again: pausing would retry it for ever.
                AcceptError::Fatal => return Err(e).context("accept failed"),
            },
        };
        if server.live >= server.room.conns {
            server.shortage.refusing(&server.room.limit);
            shared::net::refuse(&stream);
            continue;
        }
        if let Err(e) = stream.set_nonblocking(true) {
            debug!("{peer}: {e}");
            continue;
        }
        let conn = Conn {
            stream,
            peer,
            partial: Vec::new(),
            owed: Outbox::spill(),
            closing: false,
        };
        // The article's `sel.register(conn, EVENT_READ, read)`.
        match server.sel.register(FileObj::Conn(conn), EVENT_READ, read) {
            Ok(_) => {
                server.live += 1;
                server.shortage.clear();
                info!("{peer} connected");
            }
            Err(e) => debug!("{peer}: cannot register: {e}"),
        }
    }
}

/// A connection's callback, the article's `read(conn, mask)`: `recv` what
/// arrived if the mask says readable, answer it, `send` the replies, then
/// ask for the events that match what the connection now waits for. A
/// connection's failure closes that connection alone, never the server.
fn read(server: &mut Server, key: usize, mask: Mask) -> anyhow::Result<()> {
    let FileObj::Conn(conn) = &mut server.sel.keys[key].fileobj else {
        unreachable!("read is only registered for connections");
    };
    match recv_and_send(conn, mask, &mut server.scratch, server.max_line) {
        Ok(true) => {
            // Reading pauses while a megabyte is owed; writing is asked for
            // only while something is owed, or a level-triggered selector
            // would report the socket writable on every wait.
            let events = Mask {
                read: !conn.closing && !conn.owed.is_full(),
                write: !conn.owed.is_empty(),
            };
            if let Err(e) = server.sel.modify(key, events) {
                debug!("modify: {e}");
                close(server, key);
            }
        }
        Ok(false) => {
            shared::net::close_gracefully(&conn.stream);
            close(server, key);
        }
        Err(e) => {
            debug!("{} dropped: {e}", conn.peer);
            close(server, key);
        }
    }
    Ok(())
}

/// The article's `data = conn.recv(1024)` and `conn.send(data.upper() +
/// b'_SB')`. Returns whether the connection stays open.
///
/// The article answers each `recv(1024)` as one message and `send`s once.
/// Here a read may hold part of a line or many lines, each gets its reply,
/// and what `send` did not take waits for the next writable event.
fn recv_and_send(
    conn: &mut Conn,
    mask: Mask,
    scratch: &mut Scratch,
    max_line: usize,
) -> io::Result<bool> {
    if mask.read && !conn.closing {
        match conn.stream.read(&mut scratch.input) {
            // Data, or end of stream (0); the input is over at the end, or
            // after an over-long line. Answered from the loop's buffer and
            // sent straight away, not on the next writable event: a socket
            // nearly always has room, and that saves a wait per reply.
            Ok(n) => {
                scratch.output.clear();
                let (partial, read) = (&mut conn.partial, &scratch.input[..n]);
                conn.closing =
                    answer_received(partial, read, max_line, SUFFIX, &mut scratch.output);
                // What the socket does not take is owed. While replies are
                // owed already, these wait behind them, so the order stays.
                let replies = &scratch.output[..];
                let mut sent = 0;
                if conn.owed.is_empty() {
                    sent = send(&mut conn.stream, replies)?;
                }
                if sent < replies.len() {
                    conn.owed.buf_mut().extend_from_slice(&replies[sent..]);
                }
            }
            // Readable no longer (another reader, or a stale event): the
            // non-blocking read says so, and the next event comes back.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // What an earlier send left, now that the socket may have room.
    if !conn.owed.is_empty() {
        let sent = send(&mut conn.stream, conn.owed.pending())?;
        conn.owed.consume(sent);
    }
    Ok(!(conn.closing && conn.owed.is_empty()))
}

/// The article's `conn.send(…)` on a non-blocking socket: writes as much of
/// `bytes` as the kernel takes now and returns how much. The caller keeps
/// the rest.
fn send(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            // The send buffer is full: the rest is owed, and `read` asks
            // for writable events (Python's `EVENT_WRITE`) until it is gone.
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// The article's `sel.unregister(conn); conn.close()`.
fn close(server: &mut Server, key: usize) {
    if let FileObj::Conn(conn) = server.sel.unregister(key).fileobj {
        info!("{} closed", conn.peer);
    }
    server.live -= 1;
}

/// The server's state, which every callback receives: the selector, plus
/// the limits and the accept back-off.
struct Server {
    sel: Selector,
    listener_key: usize,
    live: usize,
    /// `--max-conns`, or less if the descriptor limit allows less.
    room: Room,
    max_line: usize,
    /// While out of descriptors the listener is registered for no events:
    /// level-triggered, it would report the waiting client on every wait.
    accept_paused_until: Option<Instant>,
    shortage: ShortageLog,
    /// Where every read lands and every reply batch is built.
    scratch: Scratch,
}

impl Server {
    fn resume_accepting_if_due(&mut self) -> io::Result<()> {
        if self
            .accept_paused_until
            .is_some_and(|t| Instant::now() >= t)
        {
            self.accept_paused_until = None;
            self.sel.modify(self.listener_key, EVENT_READ)?;
        }
        Ok(())
    }

    fn pause_accepting(&mut self) {
        self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
        if let Err(e) = self.sel.modify(self.listener_key, NO_EVENTS) {
            debug!("pausing accepts: {e}");
        }
    }
}

/// Which of the events asked for are ready (Python's `mask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mask {
    read: bool,
    write: bool,
}

/// Python's `EVENT_READ`; [`NO_EVENTS`] parks the paused listener. Python's
/// `EVENT_WRITE` has no constant here: [`read`] sets `Mask::write` while
/// replies are owed.
const EVENT_READ: Mask = Mask {
    read: true,
    write: false,
};
const NO_EVENTS: Mask = Mask {
    read: false,
    write: false,
};

/// Python's `SelectorKey`: the registered object, the events of interest,
/// and the data, here a callback.
struct Key {
    fileobj: FileObj,
    events: Mask,
    data: Callback,
}

enum FileObj {
    Listener(TcpListener),
    Conn(Conn),
}

/// One client's protocol state. Reads land in the loop's [`Scratch`] and
/// replies are written from it, so between events a connection keeps only
/// an unfinished line and what its socket would not take: usually nothing.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// The line still arriving, if any: the only input kept.
    partial: Vec<u8>,
    /// Replies the socket has not taken yet. The article keeps none: it
    /// sends at once, once, and drops what `send` did not take. Here the
    /// rest waits for a writable event (`Mask::write`, Python's
    /// `EVENT_WRITE`).
    owed: Outbox,
    /// End of input or an over-long line: write what is owed, then close.
    closing: bool,
}

/// `selectors.DefaultSelector`: a poller and the table of registered keys.
/// The slab index of a key is the `key` polling hands back with each event.
struct Selector {
    poller: Poller,
    keys: Slab<Key>,
}

impl Selector {
    fn new() -> io::Result<Selector> {
        let poller = Poller::new()?;
        if !poller.supports_level() {
            return Err(io::Error::new(
                ErrorKind::Unsupported,
                "this platform's poller has no level-triggered mode",
            ));
        }
        Ok(Selector {
            poller,
            keys: Slab::new(),
        })
    }

    /// `sel.register(fileobj, events, data)`; returns the key.
    fn register(&mut self, fileobj: FileObj, events: Mask, data: Callback) -> io::Result<usize> {
        let entry = self.keys.vacant_entry();
        let key = entry.key();
        // SAFETY: the socket is deleted from the poller in `unregister`
        // before it is dropped, and is owned by this table until then.
        unsafe {
            self.poller
                .add_with_mode(&fileobj.source(), interest(key, events), PollMode::Level)?;
        }
        entry.insert(Key {
            fileobj,
            events,
            data,
        });
        Ok(key)
    }

    /// `sel.modify(fileobj, events)`: a system call only if they change.
    fn modify(&mut self, key: usize, events: Mask) -> io::Result<()> {
        let k = &mut self.keys[key];
        if k.events != events {
            let source = k.fileobj.source();
            self.poller
                .modify_with_mode(source, interest(key, events), PollMode::Level)?;
            k.events = events;
        }
        Ok(())
    }

    /// `sel.unregister(fileobj)`; hands back the key so the caller can close
    /// its socket by dropping it.
    fn unregister(&mut self, key: usize) -> Key {
        let k = self.keys.remove(key);
        if let Err(e) = self.poller.delete(k.fileobj.source()) {
            debug!("unregister: {e}");
        }
        k
    }
}

impl FileObj {
    #[cfg(unix)]
    fn source(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match self {
            FileObj::Listener(l) => l.as_fd(),
            FileObj::Conn(c) => c.stream.as_fd(),
        }
    }

    #[cfg(windows)]
    fn source(&self) -> std::os::windows::io::BorrowedSocket<'_> {
        use std::os::windows::io::AsSocket;
        match self {
            FileObj::Listener(l) => l.as_socket(),
            FileObj::Conn(c) => c.stream.as_socket(),
        }
    }
}

fn interest(key: usize, events: Mask) -> Event {
    Event::new(key, events.read, events.write)
}
