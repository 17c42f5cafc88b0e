//! The select loop. Every call hands the kernel two bitmaps, `rlist` and
//! `wlist`, which it scans up to the highest descriptor and overwrites with
//! the ready ones; descriptors from FD_SETSIZE (1024) on cannot be watched.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use anyhow::Context;
use log::{info, warn};
use shared::Scratch;
use shared::limits::Room;
use shared::net::ShortageLog;

use crate::Args;
use crate::conn::{Conn, Next, TIMEOUT, accept_next, serve};
use fd_set::{FD_SETSIZE, FdSet};

struct Server {
    listener: TcpListener,
    /// Every socket `select` should watch for reading: the listener and
    /// each connection still being read.
    rlist: FdSet,
    /// Connections with replies owed.
    wlist: FdSet,
    /// Connections by descriptor. A descriptor is below FD_SETSIZE, so
    /// this table is small, and its length is `select`'s `nfds`.
    conns: Vec<Option<Conn>>,
    /// Sockets in `rlist` and `wlist`, for `--trace-sets`.
    r_count: usize,
    w_count: usize,
    live: usize,
    /// `--max-conns`, or less if the descriptor limit allows less.
    room: Room,
    max_line: usize,
    /// While accepting is paused (out of descriptors), when it resumes.
    /// Until then the listener is left out of `select`: it stays readable,
    /// and watching it would spin.
    accept_paused_until: Option<Instant>,
    shortage: ShortageLog,
    /// Where every read lands and every reply batch is built.
    scratch: Scratch,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let listener = shared::net::listen_nonblocking(&args.echo.server)?;
    let mut server = Server {
        rlist: FdSet::new(),
        wlist: FdSet::new(),
        conns: Vec::new(),
        r_count: 0,
        w_count: 0,
        live: 0,
        room: shared::limits::descriptor_room(args.echo.server.max_conns, "--max-conns"),
        max_line: args.echo.max_line,
        accept_paused_until: None,
        shortage: ShortageLog::default(),
        scratch: Scratch::new(),
        listener,
    };
    let listener_fd = server.listener.as_raw_fd();
    server.rlist.insert(listener_fd);
    server.r_count = 1;
    server.conns.resize_with(listener_fd as usize + 1, || None);
    // select's own ceiling, lower than any descriptor limit: an fd_set has
    // FD_SETSIZE bits, so no descriptor from FD_SETSIZE up can be watched.
    let wall = FD_SETSIZE - (listener_fd as usize + 1);
    info!("select's ceiling: FD_SETSIZE {FD_SETSIZE}: room for {wall} connections");
    if server.room.conns > wall {
        warn!(
            "{} is past select's FD_SETSIZE wall: holding at most {wall}; \
             --poll has no such wall",
            server.room.limit
        );
    }
    shared::net::announce(&server.listener)?;

    loop {
        // `select` overwrites its arguments with the ready sockets, so
        // it gets copies of the kept sets, 128 bytes each.
        let mut rl = server.rlist;
        let mut wl = server.wlist;
        let mut timeout = TIMEOUT;
        if let Some(until) = server.accept_paused_until {
            rl.remove(listener_fd);
            timeout = timeout.min(until.saturating_duration_since(Instant::now()));
        }
        let nfds = server.conns.len();
        let ready = match fd_set::select(nfds, &mut rl, &mut wl, timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("select failed"),
        };
        if args.trace_sets {
            info!(
                "rlist {} wlist {} -> {ready} ready",
                server.r_count, server.w_count
            );
        }
        if server
            .accept_paused_until
            .is_some_and(|t| Instant::now() >= t)
        {
            server.accept_paused_until = None;
        }

        // The article's `for sock in rl` and `for sock in wl`, in one
        // walk over the descriptors, stopping once all `ready` are seen.
        let mut seen = 0;
        for fd in 0..nfds as RawFd {
            if seen == ready {
                break;
            }
            let (readable, writable) = (rl.contains(fd), wl.contains(fd));
            seen += usize::from(readable) + usize::from(writable);
            if fd == listener_fd {
                if readable {
                    server.accept_all()?;
                }
            } else if readable || writable {
                server.serve(fd);
            }
        }
    }
}

impl Server {
    /// The article's `conn, addr = sock.accept(); rlist.append(conn)`,
    /// repeated until nobody is waiting.
    fn accept_all(&mut self) -> anyhow::Result<()> {
        while let Some((stream, peer)) = accept_next(
            &self.listener,
            &mut self.shortage,
            &mut self.accept_paused_until,
        )? {
            let fd = stream.as_raw_fd();
            // The FD_SETSIZE wall: this descriptor cannot go in an fd_set.
            if fd as usize >= FD_SETSIZE {
                self.shortage.refusing(&format_args!(
                    "descriptor {fd} is past select's FD_SETSIZE ({FD_SETSIZE})"
                ));
                shared::net::refuse(&stream);
                continue;
            }
            if self.live >= self.room.conns {
                self.shortage.refusing(&self.room.limit);
                shared::net::refuse(&stream);
                continue;
            }
            self.shortage.clear();
            info!("{peer} connected");
            let slot = fd as usize;
            if self.conns.len() <= slot {
                self.conns.resize_with(slot + 1, || None);
            }
            self.conns[slot] = Some(Conn::new(stream, peer, self.max_line));
            self.live += 1;
            self.watch(fd, true, false);
        }
        Ok(())
    }

    /// A connection `select` reported: read if it is readable, write what
    /// is owed, then put it in the sets that match what it waits for.
    fn serve(&mut self, fd: RawFd) {
        let Some(conn) = self.conns[fd as usize].as_mut() else {
            return;
        };
        match serve(conn, &mut self.scratch) {
            Next::Wait { read, write } => self.watch(fd, read, write),
            Next::Done => self.forget(fd),
        }
    }

    /// Puts `fd` in, or takes it out of, the kept `rlist` and `wlist`.
    fn watch(&mut self, fd: RawFd, read: bool, write: bool) {
        if read != self.rlist.contains(fd) {
            if read {
                self.rlist.insert(fd);
                self.r_count += 1;
            } else {
                self.rlist.remove(fd);
                self.r_count -= 1;
            }
        }
        if write != self.wlist.contains(fd) {
            if write {
                self.wlist.insert(fd);
                self.w_count += 1;
            } else {
                self.wlist.remove(fd);
                self.w_count -= 1;
            }
        }
    }

    /// Drops a connection (closing its socket) and every trace of it.
    fn forget(&mut self, fd: RawFd) {
        self.watch(fd, false, false);
        self.conns[fd as usize] = None;
        self.live -= 1;
        // Keep `nfds` (the table's length) at the highest descriptor + 1.
        while self.conns.last().is_some_and(Option::is_none)
            && self.conns.len() > self.listener.as_raw_fd() as usize + 1
        {
            self.conns.pop();
        }
    }
}

/// A safe face on `fd_set` and `select(2)`. nix wraps them too, but its
/// `FdSet` borrows every descriptor it holds, which rules out the kept
/// sets above.
mod fd_set {
    use std::io;
    use std::os::fd::RawFd;
    use std::ptr;
    use std::time::Duration;

    /// Bits in an `fd_set`: descriptors from 0 to FD_SETSIZE - 1 fit.
    // The constant's type differs between platforms.
    #[allow(clippy::unnecessary_cast)]
    pub const FD_SETSIZE: usize = libc::FD_SETSIZE as usize;

    #[derive(Clone, Copy)]
    pub struct FdSet(libc::fd_set);

    impl FdSet {
        pub fn new() -> FdSet {
            let mut set = std::mem::MaybeUninit::<libc::fd_set>::uninit();
            // SAFETY: FD_ZERO initialises the whole set it is pointed at.
            unsafe {
                libc::FD_ZERO(set.as_mut_ptr());
                FdSet(set.assume_init())
            }
        }

        pub fn insert(&mut self, fd: RawFd) {
            assert!(
                (0..FD_SETSIZE as RawFd).contains(&fd),
                "fd {fd} outside fd_set"
            );
            // SAFETY: fd is within the set, checked above.
            unsafe { libc::FD_SET(fd, &mut self.0) }
        }

        pub fn remove(&mut self, fd: RawFd) {
            assert!(
                (0..FD_SETSIZE as RawFd).contains(&fd),
                "fd {fd} outside fd_set"
            );
            // SAFETY: fd is within the set, checked above.
            unsafe { libc::FD_CLR(fd, &mut self.0) }
        }

        pub fn contains(&self, fd: RawFd) -> bool {
            assert!(
                (0..FD_SETSIZE as RawFd).contains(&fd),
                "fd {fd} outside fd_set"
            );
            // SAFETY: fd is within the set, checked above.
            unsafe { libc::FD_ISSET(fd, &self.0) }
        }
    }

    /// `select(nfds, read, write, NULL, timeout)`: waits until a socket
    /// in `read` or `write` is ready or `timeout` passes, leaves only the
    /// ready ones in the sets, and returns how many bits remain.
    pub fn select(
        nfds: usize,
        read: &mut FdSet,
        write: &mut FdSet,
        timeout: Duration,
    ) -> io::Result<usize> {
        assert!(nfds <= FD_SETSIZE, "nfds {nfds} past FD_SETSIZE");
        let mut tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: both sets are valid fd_sets we own exclusively, nfds is
        // within them (asserted), and tv is a valid timeval; select only
        // writes into these.
        let n = unsafe {
            libc::select(
                nfds as libc::c_int,
                &mut read.0,
                &mut write.0,
                ptr::null_mut(),
                &mut tv,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}
