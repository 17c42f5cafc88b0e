//! epoll: the "Hello, world!" HTTP server of article 003, level- or
//! edge-triggered.
//!
//! The article's steps map to calls one for one: `select.epoll()` is
//! `epoll_create1`, `register`/`modify`/`unregister` are `epoll_ctl` with
//! ADD/MOD/DEL, and `poll(1)` is `epoll_wait` with a one-second timeout. As
//! with `select`, the process blocks only while waiting for readiness and
//! copies afterwards; unlike `select`, the kernel keeps the interest list, so
//! each wait costs the ready sockets, not all of them.
//!
//! Level-triggered (the default, as in the article): a socket is reported on
//! every wait while it is readable or writable, so one `read` per event is
//! enough. Edge-triggered (`--edge`, which the article describes but does not
//! code): a socket is reported when it *becomes* ready, once; the server must
//! read and write until `WouldBlock` each time, or what is left waits for an
//! edge that never comes.
//!
//! ```text
//! cargo run -p epoll-http                 # terminal 1
//! curl -v http://127.0.0.1:8080/          # terminal 2
//! ```

use std::process::ExitCode;

// The HTTP logic compiles everywhere (its tests and fuzzing need no epoll);
// only Linux runs it.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
mod cli;
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
mod http;

#[cfg(target_os = "linux")]
use cli::Args;

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("error: epoll-http needs Linux (epoll)");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    shared::cli::init_logging();
    let args: Args = shared::cli::parse_args_with(
        &[("addr", "127.0.0.1:8080")],
        |command| {
            command.mut_arg("max_conns", |arg| {
                arg.help("Connections served at once; one more is answered `503 Service Unavailable` and closed")
            })
        },
        cli::check,
    );
    shared::cli::exit_with(server::run(args))
}

#[cfg(target_os = "linux")]
mod server {
    use std::collections::BTreeMap;
    use std::io::{self, ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::{Duration, Instant, SystemTime};

    use anyhow::Context;
    use log::{debug, info};
    use nix::errno::Errno;
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    use shared::limits::Room;
    use shared::net::{ACCEPT_BACKOFF, AcceptError, ShortageLog, classify_accept_error};
    use slab::Slab;
    use socket2::SockRef;

    use super::Args;
    use crate::http::{self, Prebuilt};

    /// The listener's `data` in epoll events; connections use their slab key.
    const LISTENER: u64 = u64::MAX;
    /// The article's `epoll.poll(1)`: wake at least once a second, to expire
    /// idle connections and refresh the `Date` header.
    const TICK: u16 = 1000;
    /// One read takes at most this much: a few dozen pipelined requests.
    const READ_SIZE: usize = 64 * 1024;
    /// Edge-triggered: reads one connection gets per turn (1 MiB of
    /// requests), before the loop serves the others and comes back.
    const READS_PER_TURN: usize = 16;
    /// Sent to a client over `--max-conns`.
    const SERVER_FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
        Content-Length: 12\r\nConnection: close\r\n\r\nserver full\n";

    pub fn run(args: Args) -> anyhow::Result<()> {
        let listener = shared::net::listen_nonblocking(&args.server)?;
        // shared's listener hands every connection TCP_NODELAY; article 003
        // shows it as an option beside TCP_CORK, so here connections start
        // with Nagle's algorithm on and `--nodelay` turns it off, per
        // connection, as the article does.
        SockRef::from(&listener).set_tcp_nodelay(false)?;
        // The article's `epoll = select.epoll()` ...
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
        let edge = if args.edge {
            EpollFlags::EPOLLET
        } else {
            EpollFlags::empty()
        };
        // ... and `epoll.register(serversocket.fileno(), select.EPOLLIN)`.
        epoll
            .add(
                &listener,
                EpollEvent::new(EpollFlags::EPOLLIN | edge, LISTENER),
            )
            .context("epoll_ctl(ADD) for the listener")?;
        info!("{}-triggered", if args.edge { "edge" } else { "level" });
        let mut server = Server::new(&args, epoll, listener);
        let mut events = vec![EpollEvent::empty(); 1024];
        // Ready only now: the epoll instance exists and watches the listener.
        shared::net::announce(&server.listener)?;

        loop {
            // The article's `events = epoll.poll(1)`; without waiting while
            // edge-triggered connections have reads left over.
            let tick = if server.unfinished.is_empty() {
                TICK
            } else {
                0
            };
            let ready = match server.epoll.wait(&mut events, EpollTimeout::from(tick)) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(e).context("epoll_wait"),
            };
            server.now = Instant::now();
            server.prebuilt.refresh(SystemTime::now());
            for event in &events[..ready] {
                if event.data() == LISTENER {
                    server.accept_all()?;
                } else {
                    server.on_event(event.data() as usize, event.events());
                }
            }
            // Only after the batch. An event names its connection by slab
            // key, and a closed connection's key goes to the next client
            // accepted. Within a batch only a connection's own event closes
            // it, and epoll reports each socket once a batch, so no later
            // event can name a key freed by an earlier one. Closing expired
            // connections (or accepting) before the batch would break that:
            // an expired client's `EPOLLHUP` further down the batch would
            // close the newcomer given its key.
            server.resume_unfinished();
            server.after_batch()?;
        }
    }

    struct Server {
        epoll: Epoll,
        listener: TcpListener,
        conns: Slab<Conn>,
        /// One read buffer for all connections.
        scratch: Box<[u8]>,
        /// Where each read's responses are built, for every connection.
        replies: Vec<u8>,
        /// The `200` responses, rebuilt once a second for the `Date` header.
        prebuilt: Prebuilt,
        edge: bool,
        cork: bool,
        nodelay: bool,
        header_timeout: Duration,
        idle_timeout: Duration,
        /// `--max-conns`, or less if the descriptor limit allows less.
        room: Room,
        /// The time, read once per turn of the loop.
        now: Instant,
        next_sweep: Instant,
        /// When the server started: wheel slots count whole seconds from it.
        started: Instant,
        /// The timer wheel: connection keys by the second their deadline
        /// falls in (rounded up). Each connection is filed once, at accept,
        /// and moved only when its slot comes due and its deadline has
        /// moved on meanwhile, so a sweep costs the connections due in it,
        /// not every connection: an idle crowd of 19 000 costs nothing
        /// until it expires, and a busy connection one move per timeout.
        wheel: BTreeMap<u64, Vec<usize>>,
        accept_paused_until: Option<Instant>,
        shortage: ShortageLog,
        /// Edge-triggered: connections that used their reads for the turn
        /// before reading until `WouldBlock`. No new edge will report them,
        /// so the loop comes back to them after each batch.
        unfinished: Vec<usize>,
        /// Times a connection was cut short by [`READS_PER_TURN`], for the log.
        times_cut_short: u64,
    }

    struct Conn {
        stream: TcpStream,
        peer: SocketAddr,
        /// The article's `requests[fileno]`: the start of a request still
        /// arriving. Empty between requests, so an idle connection holds no
        /// buffer; complete requests are answered straight from the read.
        pending: Vec<u8>,
        /// The article's `responses[fileno]` (its name kept): the bytes owed
        /// to the client that its socket has not taken yet. Responses are
        /// built in the loop's `Server::replies` and written from there;
        /// only what the socket would not take lands here, and the storage
        /// goes once it is written, so an idle connection holds no output
        /// buffer, however much it was sent before.
        responses: Vec<u8>,
        /// Bytes of a request body still to skip.
        body_left: usize,
        /// Responses built and not yet all written, for `--cork`.
        owed_responses: usize,
        /// Close once `responses` is written.
        closing: bool,
        /// When the request being received began, for `--header-timeout`.
        request_started: Option<Instant>,
        /// Past this, the connection is closed (header or idle timeout).
        /// Moved on by every request at no cost: the timer wheel finds out
        /// only when the connection's slot comes due (`Server::expire`).
        deadline: Instant,
        /// The start of the wheel slot (second) this connection is filed
        /// under: a deadline before it belongs in an earlier slot.
        filed: Instant,
        /// What epoll watches for now (level-triggered mode).
        interest: EpollFlags,
        /// Edge-triggered: read its share this turn with more to come; in
        /// `Server::unfinished`, served again after the others.
        unfinished: bool,
    }

    impl Server {
        fn new(args: &Args, epoll: Epoll, listener: TcpListener) -> Server {
            let now = Instant::now();
            Server {
                epoll,
                listener,
                conns: Slab::new(),
                scratch: vec![0; READ_SIZE].into_boxed_slice(),
                replies: Vec::new(),
                prebuilt: Prebuilt::new(SystemTime::now()),
                edge: args.edge,
                cork: args.cork,
                nodelay: args.nodelay,
                header_timeout: args.header_timeout,
                idle_timeout: args.idle_timeout,
                room: shared::limits::descriptor_room(args.server.max_conns, "--max-conns"),
                now,
                next_sweep: now + Duration::from_secs(1),
                started: now,
                wheel: BTreeMap::new(),
                accept_paused_until: None,
                shortage: ShortageLog::default(),
                unfinished: Vec::new(),
                times_cut_short: 0,
            }
        }

        /// Accepts every waiting client (edge-triggered mode needs that; in
        /// level-triggered mode it saves a wait per client). `Err` only for
        /// a broken listener, which ends the server.
        fn accept_all(&mut self) -> anyhow::Result<()> {
            while self.accept_paused_until.is_none() {
                let (stream, peer) = match self.listener.accept() {
                    Ok(pair) => pair,
                    Err(e) => match classify_accept_error(&e) {
                        AcceptError::WouldBlock => return Ok(()),
                        AcceptError::Skip => continue,
                        // Out of descriptors: the client stays queued and a
                        // level-triggered listener stays readable. Stop
                        // watching it for a moment instead of spinning.
                        AcceptError::OutOfResources => {
                            self.shortage.pausing(&e);
                            self.accept_paused_until = Some(self.now + ACCEPT_BACKOFF);
                            let _ = self.epoll.modify(
                                &self.listener,
                                &mut EpollEvent::new(EpollFlags::empty(), LISTENER),
                            );
                            return Ok(());
                        }
                        // A broken listener (EBADF, EINVAL): no client will
                        // come through it again, so a pause would only
                        // retry it for ever.
                        AcceptError::Fatal => return Err(e).context("accept failed"),
                    },
                };
                if self.conns.len() >= self.room.conns {
                    self.shortage.refusing(&self.room.limit);
                    let _ = (&stream).write_all(SERVER_FULL);
                    shared::net::close_gracefully(&stream);
                    continue;
                }
                if let Err(e) = self.add(stream, peer) {
                    debug!("{peer}: {e}");
                }
            }
            Ok(())
        }

        /// The article's `connection.setblocking(0)` and
        /// `epoll.register(connection.fileno(), select.EPOLLIN)`.
        fn add(&mut self, stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
            stream.set_nonblocking(true)?;
            if self.nodelay {
                stream.set_nodelay(true)?;
            }
            let interest = if self.edge {
                // Registered once for everything; never modified.
                EpollFlags::EPOLLIN
                    | EpollFlags::EPOLLOUT
                    | EpollFlags::EPOLLRDHUP
                    | EpollFlags::EPOLLET
            } else {
                EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP
            };
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            self.epoll
                .add(&stream, EpollEvent::new(interest, key as u64))?;
            entry.insert(Conn {
                stream,
                peer,
                pending: Vec::new(),
                responses: Vec::new(),
                body_left: 0,
                owed_responses: 0,
                closing: false,
                request_started: None,
                deadline: self.now + self.header_timeout,
                filed: self.now,
                interest,
                unfinished: false,
            });
            self.file(key);
            self.shortage.clear();
            info!("{peer} connected");
            Ok(())
        }

        fn on_event(&mut self, key: usize, flags: EpollFlags) {
            if !self.conns.contains(key) {
                return;
            }
            // The article's `elif event & select.EPOLLHUP`: the connection is
            // gone both ways (or broken); nothing more can be said on it.
            if flags.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
                debug!("{} hung up", self.conns[key].peer);
                self.close(key);
                return;
            }
            if self.conns[key].unfinished {
                return; // served after the batch, in its turn
            }
            self.serve(key);
        }

        /// One connection's turn: read and respond, then its interest or its end.
        fn serve(&mut self, key: usize) {
            match self.read_and_respond(key) {
                Ok(true) => {
                    if !self.edge {
                        self.update_interest(key);
                    }
                }
                Ok(false) => {
                    shared::net::close_gracefully(&self.conns[key].stream);
                    self.close(key);
                }
                Err(e) => {
                    debug!("{}: {e}", self.conns[key].peer);
                    self.close(key);
                }
            }
        }

        /// Writes what is owed, reads, answers what arrived, writes again.
        /// Returns whether the connection stays open.
        ///
        /// The article reads on `EPOLLIN` until the request is complete, then
        /// `modify(fileno, EPOLLOUT)`, and writes on the next `EPOLLOUT`:
        /// two `epoll_ctl` and a wait per request. Here the response is
        /// written as soon as it is ready; interest changes to `EPOLLOUT`
        /// only if the socket does not take it all.
        fn read_and_respond(&mut self, key: usize) -> io::Result<bool> {
            let conn = &mut self.conns[key];
            let mut reads = 0;
            loop {
                write_owed(conn, self.cork)?;
                if !conn.responses.is_empty() {
                    return Ok(true); // wait until the socket has room
                }
                if conn.closing {
                    return Ok(false);
                }
                if reads == READS_PER_TURN {
                    self.cut_short(key);
                    return Ok(true);
                }
                reads += 1;
                // The article's `connection.recv(1024)`.
                let n = match conn.stream.read(&mut self.scratch) {
                    // End of stream: every complete request was answered as it
                    // arrived; a partial one is dropped with the connection.
                    // (The article's level-triggered loop would spin here on
                    // `recv` returning nothing, and never free its entries.)
                    Ok(0) => return Ok(false),
                    Ok(n) => n,
                    // Read dry. Edge-triggered, this is the only place a
                    // connection may stop: the next edge comes with new data.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                self.replies.clear();
                let (now, header, idle) = (self.now, self.header_timeout, self.idle_timeout);
                answer(
                    conn,
                    &self.scratch[..n],
                    &mut self.replies,
                    &self.prebuilt,
                    now,
                    header,
                    idle,
                );
                if conn.deadline < conn.filed {
                    refile(&mut self.wheel, self.started, key, conn);
                }
                send(conn, &self.replies, self.cork)?;
                if !self.edge {
                    // Level-triggered: one read per event; anything left is
                    // reported by the next wait.
                    return Ok(!conn.closing || !conn.responses.is_empty());
                }
                // Edge-triggered: go round until the socket would block.
            }
        }

        /// Level-triggered: watch for reading while nothing is owed, for
        /// writing while something is (the article's `modify` calls).
        fn update_interest(&mut self, key: usize) {
            let conn = &mut self.conns[key];
            let wanted = if conn.responses.is_empty() {
                EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP
            } else {
                EpollFlags::EPOLLOUT
            };
            if wanted != conn.interest {
                conn.interest = wanted;
                let mut event = EpollEvent::new(wanted, key as u64);
                if let Err(e) = self.epoll.modify(&conn.stream, &mut event) {
                    debug!("{}: epoll_ctl(MOD): {e}", conn.peer);
                    self.close(key);
                }
            }
        }

        /// The article's `epoll.unregister(fileno)` and `close()`.
        fn close(&mut self, key: usize) {
            let conn = self.conns.remove(key);
            let _ = self.epoll.delete(&conn.stream);
            info!("{} closed", conn.peer);
        }

        // Side-work, not the model: timeouts, the edge-triggered budget,
        // accept pauses.

        /// Once per turn, after its events: timeouts, and accepts that
        /// resume when a pause for want of descriptors ends (`Err` for a
        /// listener found broken then).
        fn after_batch(&mut self) -> anyhow::Result<()> {
            if self.now >= self.next_sweep {
                self.next_sweep = self.now + Duration::from_secs(1);
                self.expire();
            }
            if self.accept_paused_until.is_some_and(|t| self.now >= t) {
                self.accept_paused_until = None;
                let _ = self.epoll.modify(
                    &self.listener,
                    &mut EpollEvent::new(EpollFlags::EPOLLIN | self.mode(), LISTENER),
                );
                // Edge-triggered, the clients already waiting raise no new
                // edge: take them now.
                self.accept_all()?;
            }
            Ok(())
        }

        /// Edge-triggered: another share of reads for each connection cut
        /// short, in the order they were, after every other ready socket
        /// had its turn. The flag, not the key, says a connection is still
        /// owed one: a key freed and taken by a newcomer meanwhile is not.
        fn resume_unfinished(&mut self) {
            for key in std::mem::take(&mut self.unfinished) {
                if self.conns.get(key).is_some_and(|c| c.unfinished) {
                    self.conns[key].unfinished = false;
                    self.serve(key);
                }
            }
        }

        /// Edge-triggered, connection `key` read [`READS_PER_TURN`] times
        /// this turn and still has more: it is served again after the
        /// others (`resume_unfinished`). A client that pipelines without
        /// pause would otherwise hold the loop, the accept included.
        fn cut_short(&mut self, key: usize) {
            let conn = &mut self.conns[key];
            conn.unfinished = true;
            self.unfinished.push(key);
            self.times_cut_short += 1;
            debug!(
                "{} read {READS_PER_TURN} times this turn; the rest after the others \
                 ({} cut short so far)",
                conn.peer, self.times_cut_short
            );
        }

        /// Files connection `key` under its deadline's slot.
        fn file(&mut self, key: usize) {
            refile(&mut self.wheel, self.started, key, &mut self.conns[key]);
        }

        /// Closes connections past their deadline: a client slower than
        /// `--header-timeout` with its request, or idle past `--idle-timeout`.
        /// Only the slots now due are looked at. An entry is stale if its
        /// key now belongs to a connection filed elsewhere (closed, and the
        /// key given to a newcomer), and is dropped; a connection whose
        /// deadline moved on is filed again under the later slot.
        fn expire(&mut self) {
            let due = self.now.saturating_duration_since(self.started).as_secs();
            while let Some(entry) = self.wheel.first_entry() {
                if *entry.key() > due {
                    break;
                }
                let (slot, keys) = entry.remove_entry();
                for key in keys {
                    let filed_here = |c: &&Conn| self::slot(self.started, c.filed) == slot;
                    let Some(conn) = self.conns.get(key).filter(filed_here) else {
                        continue;
                    };
                    if conn.deadline <= self.now {
                        debug!("{} timed out", conn.peer);
                        self.close(key);
                    } else {
                        self.file(key);
                    }
                }
            }
        }

        fn mode(&self) -> EpollFlags {
            if self.edge {
                EpollFlags::EPOLLET
            } else {
                EpollFlags::empty()
            }
        }
    }

    /// Files connection `key` on the timer wheel under its deadline's slot.
    ///
    /// A read that moves a deadline later leaves it filed where it was (its
    /// slot refiles it when due: [`Server::expire`]); one that moves it
    /// before the start of its slot (`filed`) must file it again at once,
    /// or it would be noticed late. Either timeout may be the shorter, so a
    /// request just finished (now the idle deadline) can move it as much as
    /// one left unfinished (the header deadline). The entry left behind is
    /// dropped when its slot comes due. The common case costs the read one
    /// comparison.
    fn refile(
        wheel: &mut BTreeMap<u64, Vec<usize>>,
        started: Instant,
        key: usize,
        conn: &mut Conn,
    ) {
        let slot = slot(started, conn.deadline);
        conn.filed = started + Duration::from_secs(slot - 1);
        wheel.entry(slot).or_default().push(key);
    }

    /// The timer wheel's slot for `deadline`: the whole second after
    /// `started` it falls in, rounded up, so that a slot due means every
    /// deadline filed under it is.
    fn slot(started: Instant, deadline: Instant) -> u64 {
        deadline.saturating_duration_since(started).as_secs() + 1
    }

    /// Answers the complete requests among `data` (what was pending plus
    /// what just arrived) and keeps the rest for later.
    fn answer(
        conn: &mut Conn,
        data: &[u8],
        replies: &mut Vec<u8>,
        prebuilt: &Prebuilt,
        now: Instant,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) {
        if conn.pending.is_empty() {
            let handled = http::respond(data, &mut conn.body_left, prebuilt, replies);
            conn.owed_responses += handled.responses;
            if !handled.close {
                conn.pending.extend_from_slice(&data[handled.consumed..]);
            }
            conn.closing |= handled.close;
        } else {
            conn.pending.extend_from_slice(data);
            let handled = http::respond(&conn.pending, &mut conn.body_left, prebuilt, replies);
            conn.owed_responses += handled.responses;
            conn.pending.drain(..handled.consumed);
            if handled.close || conn.pending.is_empty() {
                // Given back: between requests a connection holds no input
                // buffer, however large the read that filled it.
                conn.pending = Vec::new();
            }
            conn.closing |= handled.close;
        }
        // A request under way must be complete within --header-timeout of
        // its first byte; between requests, --idle-timeout applies.
        if conn.pending.is_empty() && conn.body_left == 0 {
            conn.request_started = None;
            conn.deadline = now + idle_timeout;
        } else {
            conn.deadline = *conn.request_started.get_or_insert(now) + header_timeout;
        }
    }

    /// Writes the responses just built in the loop's buffer, and keeps in
    /// `conn.responses` only what the socket would not take (nothing is
    /// owed before them: a connection is read only once what it was owed is
    /// written). With `--cork`, a batch of several responses is held back
    /// by TCP_CORK until all of it is written, as in [`write_owed`].
    fn send(conn: &mut Conn, replies: &[u8], cork: bool) -> io::Result<()> {
        if replies.is_empty() {
            return Ok(());
        }
        write_corked(conn, cork, |conn| {
            let written = write_until_blocked(&mut conn.stream, replies)?;
            if written < replies.len() {
                // The socket's buffer is full: the rest is owed, in order
                // (the article's `responses[fileno][byteswritten:]`).
                conn.responses.extend_from_slice(&replies[written..]);
            }
            Ok(())
        })
    }

    /// Writes what is owed, the article's `byteswritten =
    /// connections[fileno].send(responses[fileno])` and
    /// `responses[fileno] = responses[fileno][byteswritten:]`; with
    /// `--cork`, a batch of several responses is held back by TCP_CORK
    /// until all of it is written (article 003's TCP options), so it
    /// leaves in full segments.
    fn write_owed(conn: &mut Conn, cork: bool) -> io::Result<()> {
        if conn.responses.is_empty() {
            return Ok(());
        }
        write_corked(conn, cork, |conn| {
            let written = write_until_blocked(&mut conn.stream, &conn.responses)?;
            conn.responses.drain(..written);
            if conn.responses.is_empty() {
                // Given back: an idle connection holds no output buffer.
                conn.responses = Vec::new();
            }
            Ok(())
        })
    }

    /// Writes `bytes` to a non-blocking socket until it has taken them all
    /// or would block, and returns how many it took. `WouldBlock` is no
    /// failure: the socket's send buffer is full, and what it did not take
    /// waits for `EPOLLOUT` (level-triggered, `Server::update_interest`
    /// asks for it; edge-triggered, the next edge brings it).
    fn write_until_blocked(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < bytes.len() {
            match stream.write(&bytes[written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Runs `write` with TCP_CORK set around it when `--cork` is on and
    /// several responses are going out together; the count of responses
    /// owed starts again once nothing is left.
    fn write_corked(
        conn: &mut Conn,
        cork: bool,
        write: impl FnOnce(&mut Conn) -> io::Result<()>,
    ) -> io::Result<()> {
        let corked = cork && conn.owed_responses > 1;
        if corked {
            SockRef::from(&conn.stream).set_tcp_cork(true)?;
        }
        let result = write(conn);
        if corked {
            SockRef::from(&conn.stream).set_tcp_cork(false)?;
        }
        if conn.responses.is_empty() {
            conn.owed_responses = 0;
        }
        result
    }
}
