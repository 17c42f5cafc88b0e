//! Article 004's program in one file: an echo server on an I/O completion port (IOCP), Windows'
//! form of the asynchronous model of article 001 §5. Neither phase blocks the program: it hands
//! Windows whole operations (accept into this socket, receive into this buffer, send these bytes),
//! each with an OVERLAPPED whose address is the key; Windows waits and copies, and `callback_map`
//! turns that address back into what comes next. Past the article's first accept, this receives
//! and sends, one operation per client. Limits and back-off are the server's (`src/iocp.rs`).

#![cfg_attr(not(windows), allow(dead_code, unused_imports))]

#[cfg(windows)]
use std::os::windows::io::{AsRawSocket, FromRawSocket, OwnedSocket};
use std::{collections::HashMap, convert::Infallible, io, net, process::ExitCode};
use std::{ptr::null, ptr::null_mut};
#[cfg(windows)]
use windows_sys::Win32::{Foundation::*, Networking::WinSock::*, System::IO::*};

#[cfg(not(windows))] // elsewhere, the model below is not built: only this stand-in
fn run(_: &str) -> Result<Infallible, &'static str> {
    Err("iocp-article needs Windows' IOCP; on Linux, run uring-article")
}

#[cfg(windows)]
fn run(addr: &str) -> io::Result<Infallible> {
    // listen_sock: std's backlog, not listen(0); no SO_REUSEADDR, which on Windows lets others in.
    let listen_sock = net::TcpListener::bind(addr)
        .map_err(|e| io::Error::other(format!("cannot listen on {addr}: {e}")))?;
    // _iocp: a new port; `concurrency`, the threads it may run at once, is the article's.
    let concurrency = 0xffffffff;
    // SAFETY: no handle goes in (INVALID_HANDLE_VALUE asks for a new port); checked.
    let iocp = unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, null_mut(), 0, concurrency) };
    // CreateIoCompletionPort(listen_sock.fileno(), _iocp, 0, 0): AcceptEx completes there.
    let listen = listen_sock.as_raw_socket() as HANDLE;
    // SAFETY: the socket and the port are open; the port is returned, not consumed.
    if iocp.is_null() || unsafe { CreateIoCompletionPort(listen, iocp, 0, 0) }.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut server = Server {
        iocp,
        listen_sock,
        callback_map: HashMap::new(),
    };
    // conn_sock and ov.AcceptEx(...): one accept in flight; on_accepted posts the next.
    server.post_accept()?;
    println!("listening on {}", server.listen_sock.local_addr()?); // flushed at its \n
    loop {
        // GetQueuedCompletionStatus(_iocp, 1000): wait at most a second for a completion.
        let (mut transferred, mut key, mut address) = (0, 0, null_mut());
        // SAFETY: the port is open, and the three out-pointers are to these locals.
        let ok = unsafe {
            GetQueuedCompletionStatus(iocp, &mut transferred, &mut key, &mut address, 1000)
        };
        let error = io::Error::last_os_error(); // what went wrong, if `ok` is 0
        if address.is_null() && error.raw_os_error() == Some(WAIT_TIMEOUT as i32) {
            continue; // the article's `status is None`: a second went by
        }
        // `err, transferred, key, address = status`. The article ignores err; an operation
        // that failed completes too, and err says why (a client's reset, mostly).
        let status = (ok != 0).then_some(transferred as usize).ok_or(error);
        // `callback = callback_map[address]; callback()`. Removed: each operation completes
        // once, and its OVERLAPPED and buffer are then ours again.
        let Some((_ov, callback)) = server.callback_map.remove(&(address as usize)) else {
            status?; // no address and no timeout: the port itself failed
            continue;
        };
        callback(&mut server, status)?;
    }
}

/// What to do when an operation completes; it owns the buffer Windows uses till then.
#[cfg(windows)]
type Callback = Box<dyn FnOnce(&mut Server, io::Result<usize>) -> io::Result<()>>;

#[cfg(windows)]
struct Server {
    iocp: HANDLE,
    listen_sock: net::TcpListener,
    /// The article's `callback_map`: an OVERLAPPED's address -> it, and its callback.
    callback_map: HashMap<usize, (Box<Overlapped>, Callback)>,
}

/// The article's `Overlapped`: the OVERLAPPED, and what else Windows writes meanwhile.
#[cfg(windows)]
#[derive(Default)]
struct Overlapped {
    ov: OVERLAPPED,
    flags: u32,
    addresses: [SOCKADDR_STORAGE; 2],
}

/// One client, owned by the one operation in flight on it, so nothing frees it meanwhile.
struct Conn {
    sock: net::TcpStream,
    peer: net::SocketAddr,
    buf: Vec<u8>,     // where each receive lands
    line: Vec<u8>,    // a line still arriving: a receive may end anywhere
    replies: Vec<u8>, // what Windows has yet to take
    eof: bool,        // the client has shut down its sending
}

#[cfg(windows)]
impl Server {
    /// The article's `ov = Overlapped(NULL)`, the call, and `callback_map[ov.address] =
    /// ...`. Its `else: on_accepted()` is wrong: a call done at once still queues a
    /// completion, so the callback is filed either way. A failed call queues none.
    fn submit(&mut self, op: impl FnOnce(&mut Overlapped) -> bool, cb: Callback) -> io::Result<()> {
        let mut ov = Box::<Overlapped>::default();
        // SAFETY: WSAGetLastError only reads this thread's last error code.
        if !op(&mut ov) && unsafe { WSAGetLastError() } != WSA_IO_PENDING {
            return Err(io::Error::last_os_error()); // `cb`, and what it owns, dropped
        }
        self.callback_map
            .insert(&raw const ov.ov as usize, (ov, cb));
        Ok(())
    }

    /// `conn_sock = socket.socket(listen_sock.family)`, then `ov.AcceptEx(...)` into it.
    fn post_accept(&mut self) -> io::Result<()> {
        let ipv4 = self.listen_sock.local_addr()?.is_ipv4();
        let af = i32::from(if ipv4 { AF_INET } else { AF_INET6 });
        // SAFETY: plain values and a null protocol info; the result is checked.
        let s = unsafe { WSASocketW(af, SOCK_STREAM, IPPROTO_TCP, null(), 0, WSA_FLAG_OVERLAPPED) };
        if s == INVALID_SOCKET {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new socket that nothing else owns; closed when dropped.
        let conn_sock = unsafe { OwnedSocket::from_raw_socket(s as u64) };
        let listen = self.listen_sock.as_raw_socket() as SOCKET;
        let room = size_of::<SOCKADDR_STORAGE>() as u32;
        let call = |o: &mut Overlapped| {
            let out = o.addresses.as_mut_ptr().cast();
            // SAFETY: both sockets are open; `o` stays filed as `carry_on`'s SAFETY says.
            unsafe { AcceptEx(listen, s, out, 0, room, room, &mut 0, &mut o.ov) != 0 }
        };
        self.submit(call, Box::new(|s, r| s.on_accepted(conn_sock, r)))
    }

    /// The article's `on_accepted()`: SO_UPDATE_ACCEPT_CONTEXT, who connected, a receive.
    fn on_accepted(&mut self, conn_sock: OwnedSocket, status: io::Result<usize>) -> io::Result<()> {
        self.post_accept()?; // the next accept, so one is always in flight
        let Ok(_) = status.inspect_err(|e| eprintln!("accept: {e}")) else {
            return Ok(()); // a client gone before its accept, mostly
        };
        let s = conn_sock.as_raw_socket() as SOCKET;
        let listen = self.listen_sock.as_raw_socket() as SOCKET;
        let (val, len) = (&raw const listen as *const u8, size_of::<SOCKET>() as i32);
        // Without it, getpeername and shutdown fail on the socket on Windows (not on Wine).
        // SAFETY: optval points at `listen`, a local of `len` bytes.
        let rc = unsafe { setsockopt(s, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, val, len) };
        // Its receives and sends complete on the port too (the article's accept needs none).
        // SAFETY: the socket and the port are open; the port is returned, not consumed.
        let port = unsafe { CreateIoCompletionPort(s as HANDLE, self.iocp, 0, 0) };
        let sock = net::TcpStream::from(conn_sock);
        let (0, false, Ok(peer)) = (rc, port.is_null(), sock.peer_addr()) else {
            return Ok(()); // gone already
        };
        eprintln!("connected from {peer}");
        self.carry_on(Conn {
            sock,
            peer,
            buf: vec![0; 4096],
            line: vec![],
            replies: vec![],
            eof: false,
        })
    }

    fn on_received(&mut self, mut conn: Conn, status: io::Result<usize>) -> io::Result<()> {
        let n = match status {
            Ok(n) => n,
            Err(e) => return dropped(conn.peer, e),
        };
        conn.replies = answer_lines(&mut conn.line, &conn.buf[..n]);
        // 0 bytes: the client has shut down its sending; a last line without its newline
        // is answered as a line, then the socket closes.
        conn.eof = n == 0;
        if conn.eof && !conn.line.is_empty() {
            conn.replies = answer_lines(&mut conn.line, b"\n");
        }
        self.carry_on(conn)
    }

    fn on_sent(&mut self, mut conn: Conn, status: io::Result<usize>) -> io::Result<()> {
        match status {
            Ok(n) => drop(conn.replies.drain(..n)), // part, maybe (never none): rest goes next
            Err(e) => return dropped(conn.peer, e),
        }
        self.carry_on(conn)
    }

    /// A client's next operation, one at a time: WSASend while replies are owed; then
    /// the close if it has shut down its sending; else WSARecv into its buffer.
    fn carry_on(&mut self, mut conn: Conn) -> io::Result<()> {
        let (sock, peer) = (conn.sock.as_raw_socket() as SOCKET, conn.peer);
        let posted = if !conn.replies.is_empty() {
            let (len, buf) = (conn.replies.len() as u32, conn.replies.as_mut_ptr());
            let wsabuf = WSABUF { len, buf };
            // SAFETY: the bytes are `conn`'s, owned by the callback, and `o`'s: both stay filed
            // until the completion, or until a failing `run` drops them just before the exit.
            let call = |o: &mut Overlapped| unsafe {
                WSASend(sock, &wsabuf, 1, null_mut(), 0, &mut o.ov, None) == 0
            };
            self.submit(call, Box::new(|s, r| s.on_sent(conn, r)))
        } else if conn.eof {
            eprintln!("{peer} closed");
            return Ok(()); // dropping `conn` closes its socket
        } else {
            let (len, buf) = (conn.buf.len() as u32, conn.buf.as_mut_ptr());
            let wsabuf = WSABUF { len, buf };
            // SAFETY: as for WSASend; WSARecv's flags are `o`'s too.
            let call = |o: &mut Overlapped| unsafe {
                WSARecv(sock, &wsabuf, 1, null_mut(), &mut o.flags, &mut o.ov, None) == 0
            };
            self.submit(call, Box::new(|s, r| s.on_received(conn, r)))
        };
        posted.or_else(|e| dropped(peer, e)) // a call that failed at once: its client dropped
    }
}

/// A client that failed (reset, mostly) is dropped, with whatever it is owed.
fn dropped(peer: net::SocketAddr, e: io::Error) -> io::Result<()> {
    eprintln!("{peer} dropped: {e}");
    Ok(())
}

/// The reply to each whole line, ASCII a-z upper-cased; the rest stays in `line`: a
/// receive is not a message, and may hold several lines, or part of one.
fn answer_lines(line: &mut Vec<u8>, data: &[u8]) -> Vec<u8> {
    let mut replies = Vec::new();
    for &b in data {
        line.push(b.to_ascii_uppercase());
        if b == b'\n' {
            replies.append(line);
        }
    }
    replies
}

fn main() -> ExitCode {
    // `--addr HOST:PORT`, read by hand; `run` returns only if it fails: its loop has no end.
    let Err(e) = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => run("127.0.0.1:9090"), // the article's port, on loopback
        [flag, addr] if flag == "--addr" => run(addr),
        _ => {
            eprintln!("usage: iocp-article [--addr HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
