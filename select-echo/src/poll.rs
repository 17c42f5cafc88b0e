//! The poll loop (`--poll`): the same server on `poll(2)`, the step between
//! select and epoll that article 001 §7 describes.
//!
//! Instead of two bitmaps, `poll` takes an array of `pollfd` entries, one
//! per socket: the descriptor, the `events` it waits for, and `revents`,
//! where the kernel writes what happened. There is no FD_SETSIZE: any
//! descriptor fits, and the array is as long as there are sockets. What
//! stays is the cost that epoll removes: every call copies the whole array
//! into the kernel, which checks every entry, and the loop then scans every
//! entry for the few that are ready. Both grow with the connections, idle
//! ones included.
//!
//! The array changes only when a connection comes or goes, never per turn:
//! `events` is the kept interest (as select's master sets are), and `poll`
//! writes only `revents`, so the same array is handed over again. A leaving
//! connection's entry is swap-removed: the last entry moves into its slot,
//! and `slot_of`, from descriptor to slot, follows it.

use std::io::{self, ErrorKind};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use anyhow::Context;
use log::info;
use shared::Scratch;
use shared::limits::Room;
use shared::net::ShortageLog;

use crate::Args;
use crate::conn::{Conn, Next, TIMEOUT, accept_next, serve};

/// The listener's entry: always slot 0.
const LISTENER: usize = 0;
/// `slot_of` for a descriptor that is no connection of ours.
const NO_SLOT: usize = usize::MAX;

struct Server {
    listener: TcpListener,
    /// What `poll` is handed: the listener, then one entry per connection.
    fds: Vec<libc::pollfd>,
    /// Connections by descriptor, as in the select loop.
    conns: Vec<Option<Conn>>,
    /// From descriptor to its slot in `fds`.
    slot_of: Vec<usize>,
    /// `--max-conns`, or less if the descriptor limit allows less.
    room: Room,
    max_line: usize,
    /// While out of descriptors the listener's `events` are cleared until
    /// then: it stays readable, and watching it would spin.
    accept_paused_until: Option<Instant>,
    shortage: ShortageLog,
    /// Where every read lands and every reply batch is built.
    scratch: Scratch,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let listener = shared::net::listen_nonblocking(&args.echo.server)?;
    let mut server = Server {
        fds: vec![pollfd(listener.as_raw_fd(), libc::POLLIN)],
        listener,
        conns: Vec::new(),
        slot_of: Vec::new(),
        room: shared::limits::descriptor_room(args.echo.server.max_conns, "--max-conns"),
        max_line: args.echo.max_line,
        accept_paused_until: None,
        shortage: ShortageLog::default(),
        scratch: Scratch::new(),
    };
    shared::net::announce(&server.listener)?;

    loop {
        let mut timeout = TIMEOUT;
        if let Some(until) = server.accept_paused_until {
            timeout = timeout.min(until.saturating_duration_since(Instant::now()));
        }
        let ready = match poll(&mut server.fds, timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("poll failed"),
        };
        if args.trace_sets {
            info!("pollfd entries {} -> {ready} ready", server.fds.len());
        }
        if server
            .accept_paused_until
            .is_some_and(|t| Instant::now() >= t)
        {
            server.accept_paused_until = None;
            server.fds[LISTENER].events = libc::POLLIN;
        }

        // Every entry is looked at until all `ready` are seen. The listener
        // first: new connections go to the end with no `revents` yet.
        let mut seen = 0;
        if server.fds[LISTENER].revents != 0 {
            seen += 1;
            server.accept_all()?;
        }
        let mut slot = 1;
        while slot < server.fds.len() && seen < ready {
            let revents = server.fds[slot].revents;
            if revents == 0 {
                slot += 1;
                continue;
            }
            seen += 1;
            // POLLHUP and POLLERR are reported whatever `events` asked
            // for; the read or write that follows finds out which.
            if !server.serve(slot) {
                // Swap-removed: the last entry, not yet looked at this
                // turn, is now in this slot.
                continue;
            }
            slot += 1;
        }
    }
}

impl Server {
    /// The article's `conn, addr = sock.accept()`, repeated until nobody
    /// is waiting. No FD_SETSIZE check: any descriptor fits in a `pollfd`.
    fn accept_all(&mut self) -> anyhow::Result<()> {
        while let Some((stream, peer)) = accept_next(
            &self.listener,
            &mut self.shortage,
            &mut self.accept_paused_until,
        )? {
            // Every entry but the listener's is a connection.
            let live = self.fds.len() - 1;
            if live >= self.room.conns {
                self.shortage.refusing(&self.room.limit);
                shared::net::refuse(&stream);
                continue;
            }
            self.shortage.clear();
            info!("{peer} connected");
            let fd = stream.as_raw_fd();
            let at = fd as usize;
            if self.conns.len() <= at {
                self.conns.resize_with(at + 1, || None);
                self.slot_of.resize(at + 1, NO_SLOT);
            }
            self.conns[at] = Some(Conn::new(stream, peer, self.max_line));
            self.slot_of[at] = self.fds.len();
            self.fds.push(pollfd(fd, libc::POLLIN));
        }
        if self.accept_paused_until.is_some() {
            self.fds[LISTENER].events = 0;
        }
        Ok(())
    }

    /// The connection in `slot` was reported: serve it, then set what its
    /// entry waits for. Returns false if it left (its slot now holds another).
    fn serve(&mut self, slot: usize) -> bool {
        let fd = self.fds[slot].fd;
        let Some(conn) = self.conns[fd as usize].as_mut() else {
            unreachable!("every entry past the listener's is a connection");
        };
        match serve(conn, &mut self.scratch) {
            Next::Wait { read, write } => {
                let entry = &mut self.fds[slot];
                entry.events =
                    if read { libc::POLLIN } else { 0 } | if write { libc::POLLOUT } else { 0 };
                true
            }
            Next::Done => {
                self.forget(fd);
                false
            }
        }
    }

    /// Drops a connection (closing its socket) and its entry, moving the
    /// last entry into its slot.
    fn forget(&mut self, fd: RawFd) {
        let at = fd as usize;
        let slot = self.slot_of[at];
        self.fds.swap_remove(slot);
        if let Some(moved) = self.fds.get(slot) {
            self.slot_of[moved.fd as usize] = slot;
        }
        self.slot_of[at] = NO_SLOT;
        self.conns[at] = None;
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// `poll(fds, nfds, timeout)`: waits until an entry's `events` happen (or
/// an error or hang-up, which need no asking) or `timeout` passes, writes
/// each entry's `revents`, and returns how many entries have any.
fn poll(fds: &mut [libc::pollfd], timeout: std::time::Duration) -> io::Result<usize> {
    // Rounded up, so a short wait for the accept back-off is not a spin.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()`
    // pollfd entries; poll writes only their `revents`.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
