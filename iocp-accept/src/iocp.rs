//! The completion model on Windows: an I/O completion port, article 004.
//!
//! The article's four steps, with its names: create the port and associate
//! the listener; post `AcceptEx` on a socket made beforehand, with an
//! OVERLAPPED whose address is the key; wait in `GetQueuedCompletionStatus`
//! (1000 ms timeout, in a loop); look the completed OVERLAPPED's address up
//! in `callback_map` and run its callback. The article stops after one
//! accept; this server keeps accepting and serves the echo protocol with
//! `WSARecv`/`WSASend` completions.

use std::collections::HashMap;
use std::io;
use std::mem::{self, size_of};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::windows::io::AsRawSocket;
use std::ptr;
use std::time::Instant;

use anyhow::Context;
use log::{debug, info};
use shared::echo::MAX_OWED;
use shared::limits::Room;
use shared::net::{ACCEPT_BACKOFF, AcceptError, ShortageLog, classify_accept_error};
use shared::{LineBuffer, answer_lines, answer_rest};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use windows_sys::Win32::Foundation::{GetLastError, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Networking::WinSock::{
    LPFN_ACCEPTEX, LPFN_GETACCEPTEXSOCKADDRS, SIO_GET_EXTENSION_FUNCTION_POINTER,
    SO_UPDATE_ACCEPT_CONTEXT, SOCKADDR, SOCKADDR_STORAGE, SOCKET, SOCKET_ERROR, SOL_SOCKET,
    WSA_IO_PENDING, WSABUF, WSAGetLastError, WSAID_ACCEPTEX, WSAID_GETACCEPTEXSOCKADDRS, WSAIoctl,
    WSARecv, WSASend, setsockopt,
};
use windows_sys::Win32::System::IO::{
    CreateIoCompletionPort, GetQueuedCompletionStatus, OVERLAPPED,
};

use crate::Args;

/// `AcceptEx` calls kept posted.
const ACCEPTS_ARMED: usize = 4;
/// The article's `GetQueuedCompletionStatus(_iocp, 1000)`.
const WAIT_MS: u32 = 1000;
/// `GetLastError` after a wait that timed out.
const WAIT_TIMEOUT: u32 = 258;
/// Room for one address in `AcceptEx`'s output buffer, as its documentation
/// asks: the largest address plus 16 bytes.
const ADDRESS_ROOM: usize = size_of::<SOCKADDR_STORAGE>() + 16;
/// Send buffers past this size are not kept for reuse.
const KEEP_CAPACITY: usize = 64 * 1024;

/// A posted operation: the value in `callback_map` under the address of its
/// OVERLAPPED, which comes first so that the two addresses are the same.
///
/// Windows writes the OVERLAPPED and the operation's buffer until the
/// completion is dequeued, possibly long after the call that posted it has
/// returned. So the operation lives in a `Box` (its address never changes)
/// held by `callback_map` until then, and owns everything the kernel touches:
/// freeing or moving any of it earlier would let the kernel write into
/// memory that has since been reused.
#[repr(C)]
struct Operation {
    overlapped: OVERLAPPED,
    kind: Kind,
}

// Every `Kind` lives in a boxed `Operation`, one allocation each: boxing
// the accept's address buffer too would make it two.
#[allow(clippy::large_enum_variant)]
enum Kind {
    /// `AcceptEx` into `socket`, made beforehand; the addresses land in
    /// `addresses`.
    Accept {
        socket: Socket,
        addresses: [u8; 2 * ADDRESS_ROOM],
    },
    /// `WSARecv` into the free space of the connection's line buffer.
    Recv {
        conn: usize,
        input: LineBuffer,
        flags: u32,
    },
    /// `WSASend` of `buf[sent..]`.
    Send {
        conn: usize,
        buf: Vec<u8>,
        sent: usize,
    },
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// `None` while a receive, which owns it then, is in flight.
    input: Option<LineBuffer>,
    owed: Vec<u8>,
    send_in_flight: bool,
    closing: bool,
    broken: bool,
}

struct Server {
    port: HANDLE,
    listener: TcpListener,
    accept_ex: LPFN_ACCEPTEX,
    get_accept_ex_sockaddrs: LPFN_GETACCEPTEXSOCKADDRS,
    /// The article's `callback_map`: OVERLAPPED address -> operation.
    callback_map: HashMap<usize, Box<Operation>>,
    conns: slab::Slab<Conn>,
    accepts_posted: usize,
    accept_retry_at: Option<Instant>,
    /// `--max-conns`, or less if the descriptor limit allows less.
    room: Room,
    max_line: usize,
    shortage: ShortageLog,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let listener = shared::net::listen(&args.echo.server)?;
    // Set-up before the four steps: the completion port, and the
    // listener associated with it.
    // SAFETY: with INVALID_HANDLE_VALUE and no existing port the call
    // creates a port and touches no handle of ours; null is checked.
    let port = unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, ptr::null_mut(), 0, 1) };
    if port.is_null() {
        return Err(io::Error::last_os_error()).context("CreateIoCompletionPort");
    }
    associate(port, listener.as_raw_socket() as SOCKET).context("associating the listener")?;
    // AcceptEx and GetAcceptExSockaddrs are Winsock extensions, reached
    // through function pointers; both from the same provider.
    let accept_ex: LPFN_ACCEPTEX = extension(&listener, WSAID_ACCEPTEX).context("AcceptEx")?;
    let get_accept_ex_sockaddrs: LPFN_GETACCEPTEXSOCKADDRS =
        extension(&listener, WSAID_GETACCEPTEXSOCKADDRS).context("GetAcceptExSockaddrs")?;
    let mut server = Server {
        port,
        listener,
        accept_ex,
        get_accept_ex_sockaddrs,
        callback_map: HashMap::new(),
        conns: slab::Slab::new(),
        accepts_posted: 0,
        accept_retry_at: None,
        room: shared::limits::descriptor_room(args.echo.server.max_conns, "--max-conns"),
        max_line: args.echo.max_line,
        shortage: ShortageLog::default(),
    };
    server.post_accepts()?;
    shared::net::announce(&server.listener)?;

    loop {
        // Step 3: wait for a completion.
        let timeout = match server.accept_retry_at {
            Some(t) => t.saturating_duration_since(Instant::now()).as_millis() as u32,
            None => WAIT_MS,
        };
        let (mut bytes, mut key, mut overlapped) = (0u32, 0usize, ptr::null_mut::<OVERLAPPED>());
        // SAFETY: the out-pointers are to locals that outlive the call.
        let ok = unsafe {
            GetQueuedCompletionStatus(server.port, &mut bytes, &mut key, &mut overlapped, timeout)
        };
        let error = if ok == 0 {
            // SAFETY: GetLastError has no preconditions.
            Some(unsafe { GetLastError() })
        } else {
            None
        };
        if server.accept_retry_at.is_some_and(|t| Instant::now() >= t) {
            server.accept_retry_at = None;
            server.post_accepts()?;
        }
        if overlapped.is_null() {
            match error {
                Some(WAIT_TIMEOUT) | None => continue,
                Some(code) => {
                    return Err(io::Error::from_raw_os_error(code as i32))
                        .context("GetQueuedCompletionStatus");
                }
            }
        }
        // Step 4: the OVERLAPPED's address finds the operation.
        let operation = server
            .callback_map
            .remove(&(overlapped as usize))
            .expect("every posted OVERLAPPED is in callback_map");
        let result = match error {
            None => Ok(bytes as usize),
            Some(code) => Err(io::Error::from_raw_os_error(code as i32)),
        };
        match operation.kind {
            Kind::Accept { socket, addresses } => server.on_accepted(socket, &addresses, result)?,
            Kind::Recv { conn, input, .. } => server.on_received(conn, input, result),
            Kind::Send { conn, buf, sent } => server.on_sent(conn, buf, sent, result),
        }
    }
}

/// Associates a socket with the completion port: its completions go there.
fn associate(port: HANDLE, socket: SOCKET) -> io::Result<()> {
    // SAFETY: both handles are valid; the port is returned, not consumed.
    let result = unsafe { CreateIoCompletionPort(socket as HANDLE, port, 0, 0) };
    if result.is_null() {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A Winsock extension function, looked up by its GUID.
fn extension<F>(listener: &TcpListener, guid: windows_sys::core::GUID) -> io::Result<Option<F>>
where
    F: Copy,
{
    let mut function: Option<F> = None;
    let mut returned = 0u32;
    // SAFETY: the input is the GUID, the output a pointer-sized slot that
    // Winsock fills with the function's address (an `Option<fn>` has the
    // same layout as a nullable pointer).
    let rc = unsafe {
        WSAIoctl(
            listener.as_raw_socket() as SOCKET,
            SIO_GET_EXTENSION_FUNCTION_POINTER,
            ptr::from_ref(&guid).cast(),
            size_of::<windows_sys::core::GUID>() as u32,
            ptr::from_mut(&mut function).cast(),
            size_of::<Option<F>>() as u32,
            &mut returned,
            ptr::null_mut(),
            None,
        )
    };
    if rc == SOCKET_ERROR || function.is_none() {
        return Err(io::Error::last_os_error());
    }
    Ok(function)
}

impl Server {
    /// Step 2 for the listener: keep `ACCEPTS_ARMED` AcceptEx calls posted.
    /// `Err` only for a broken listener, which ends the server.
    fn post_accepts(&mut self) -> anyhow::Result<()> {
        while self.accepts_posted < ACCEPTS_ARMED {
            let Err(e) = self.post_accept() else { continue };
            match classify_accept_error(&e) {
                // A listener AcceptEx refuses (WSAEINVAL, WSAENOTSOCK) will
                // never take a client again: a pause would hide the fault.
                AcceptError::Fatal => return Err(e).context("accept failed"),
                // No socket to accept into (out of descriptors or buffers),
                // or a passing fault: try again after a pause, not a spin.
                _ => {
                    self.shortage
                        .pausing(&format_args!("cannot post AcceptEx: {e}"));
                    self.accept_retry_at = Some(Instant::now() + ACCEPT_BACKOFF);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The article's `ov.AcceptEx(listen_sock.fileno(), conn_sock.fileno())`.
    fn post_accept(&mut self) -> io::Result<()> {
        let domain = Domain::for_address(self.listener.local_addr()?);
        let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        let accept_socket = socket.as_raw_socket() as SOCKET;
        let mut operation = Box::new(Operation {
            overlapped: OVERLAPPED::default(),
            kind: Kind::Accept {
                socket,
                addresses: [0; 2 * ADDRESS_ROOM],
            },
        });
        let Kind::Accept { addresses, .. } = &mut operation.kind else {
            unreachable!()
        };
        let output = addresses.as_mut_ptr().cast();
        let overlapped = ptr::from_mut(&mut operation.overlapped);
        let accept_ex = self.accept_ex.expect("looked up at start");
        let mut received = 0u32;
        // SAFETY: the output buffer and OVERLAPPED belong to `operation`,
        // which goes into callback_map below and stays there (boxed, so
        // unmoved) until its completion is dequeued.
        let ok = unsafe {
            accept_ex(
                self.listener.as_raw_socket() as SOCKET,
                accept_socket,
                output,
                0,
                ADDRESS_ROOM as u32,
                ADDRESS_ROOM as u32,
                &mut received,
                overlapped,
            )
        };
        self.try_post(operation, ok != 0).map_err(|(e, _)| e)?;
        self.accepts_posted += 1;
        Ok(())
    }

    /// The article's `on_accepted()`. A failed accept is that client's
    /// (reset before it was taken); a broken listener shows in the repost
    /// first, and ends the server there.
    fn on_accepted(
        &mut self,
        socket: Socket,
        addresses: &[u8],
        result: io::Result<usize>,
    ) -> anyhow::Result<()> {
        self.accepts_posted -= 1;
        self.post_accepts()?;
        if let Err(e) = result {
            debug!("AcceptEx: {e}");
            return Ok(());
        }
        let listener = self.listener.as_raw_socket() as SOCKET;
        // Without this, getpeername, shutdown and the like fail on the new
        // socket on Windows (Wine does not need it, so only Windows checks it).
        // SAFETY: setsockopt needs `optval` to point at `optlen` readable
        // bytes: the listener's SOCKET, a live local, and its size.
        let rc = unsafe {
            setsockopt(
                socket.as_raw_socket() as SOCKET,
                SOL_SOCKET,
                SO_UPDATE_ACCEPT_CONTEXT,
                ptr::from_ref(&listener).cast(),
                size_of::<SOCKET>() as i32,
            )
        };
        if rc == SOCKET_ERROR {
            debug!("SO_UPDATE_ACCEPT_CONTEXT: {}", io::Error::last_os_error());
            return Ok(());
        }
        let peer = self.peer_of(addresses);
        let stream = TcpStream::from(socket);
        if self.conns.len() >= self.room.conns {
            self.shortage.refusing(&self.room.limit);
            shared::net::refuse(&stream);
            return Ok(());
        }
        if let Err(e) = associate(self.port, stream.as_raw_socket() as SOCKET) {
            debug!("{peer}: {e}");
            return Ok(());
        }
        self.shortage.clear();
        info!("{peer} connected");
        let conn = self.conns.insert(Conn {
            stream,
            peer,
            input: Some(LineBuffer::new(self.max_line)),
            owed: Vec::new(),
            send_in_flight: false,
            closing: false,
            broken: false,
        });
        self.post_recv(conn);
        Ok(())
    }

    /// The client's address, from AcceptEx's output buffer.
    fn peer_of(&self, addresses: &[u8]) -> SocketAddr {
        let get = self.get_accept_ex_sockaddrs.expect("looked up at start");
        let (mut local, mut remote) = (ptr::null_mut::<SOCKADDR>(), ptr::null_mut::<SOCKADDR>());
        let (mut local_len, mut remote_len) = (0i32, 0i32);
        // SAFETY: `addresses` is the buffer AcceptEx filled, with the sizes
        // it was given; the function returns pointers into it.
        unsafe {
            get(
                addresses.as_ptr().cast(),
                0,
                ADDRESS_ROOM as u32,
                ADDRESS_ROOM as u32,
                &mut local,
                &mut local_len,
                &mut remote,
                &mut remote_len,
            );
        }
        if remote.is_null() || remote_len <= 0 {
            return SocketAddr::from(([0, 0, 0, 0], 0));
        }
        // SAFETY: `remote` points at `remote_len` bytes of a socket address
        // inside `addresses`, which SockAddr copies.
        let addr = unsafe {
            SockAddr::try_init(|storage, len| {
                ptr::copy_nonoverlapping(
                    remote.cast::<u8>(),
                    storage.cast::<u8>(),
                    remote_len as usize,
                );
                *len = remote_len;
                Ok(())
            })
        };
        addr.ok()
            .and_then(|((), a)| a.as_socket())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// `WSARecv` into the free space of the connection's line buffer.
    fn post_recv(&mut self, conn: usize) {
        let c = &mut self.conns[conn];
        let socket = c.stream.as_raw_socket() as SOCKET;
        let input = c.input.take().expect("no receive in flight");
        let mut operation = Box::new(Operation {
            overlapped: OVERLAPPED::default(),
            kind: Kind::Recv {
                conn,
                input,
                flags: 0,
            },
        });
        let Kind::Recv { input, flags, .. } = &mut operation.kind else {
            unreachable!()
        };
        let spare = input.spare();
        let wsabuf = WSABUF {
            len: spare.len() as u32,
            buf: spare.as_mut_ptr(),
        };
        let flags = ptr::from_mut(flags);
        let overlapped = ptr::from_mut(&mut operation.overlapped);
        // SAFETY: the buffer (the line buffer's free space), the flags and
        // the OVERLAPPED belong to `operation`, filed in callback_map until
        // its completion; the WSABUF array itself may live on the stack.
        let rc = unsafe { WSARecv(socket, &wsabuf, 1, ptr::null_mut(), flags, overlapped, None) };
        if let Err((e, operation)) = self.try_post(operation, rc == 0) {
            let Kind::Recv { input, .. } = operation.kind else {
                unreachable!("a receive was posted")
            };
            let c = &mut self.conns[conn];
            c.input = Some(input);
            debug!("{}: WSARecv: {e}", c.peer);
            self.break_off(conn);
        }
    }

    /// Step 1 (the key and `callback_map`), completed after step 2: files
    /// a posted operation under its OVERLAPPED's address. `done` says the call completed at once, which
    /// queues a completion to the port just the same. If it was not posted,
    /// no completion will come, and the operation is handed back.
    fn try_post(
        &mut self,
        operation: Box<Operation>,
        done: bool,
    ) -> Result<(), (io::Error, Box<Operation>)> {
        if !done {
            // SAFETY: WSAGetLastError has no preconditions.
            let error = unsafe { WSAGetLastError() };
            if error != WSA_IO_PENDING {
                return Err((io::Error::from_raw_os_error(error), operation));
            }
        }
        let key = ptr::from_ref(&operation.overlapped) as usize;
        self.callback_map.insert(key, operation);
        Ok(())
    }

    /// A receive completed: the bytes are already in the line buffer.
    fn on_received(&mut self, conn: usize, mut input: LineBuffer, result: io::Result<usize>) {
        let c = &mut self.conns[conn];
        if c.broken {
            c.input = Some(input);
            return self.free_if_idle(conn);
        }
        match result {
            Err(e) => {
                debug!("{} receive failed: {e}", c.peer);
                c.input = Some(input);
                return self.break_off(conn);
            }
            Ok(0) => {
                let _ = answer_rest(&mut input, b"", &mut c.owed);
                c.closing = true;
            }
            Ok(n) => {
                input.filled(n);
                if answer_lines(&mut input, b"", &mut c.owed).is_err() {
                    c.closing = true;
                }
            }
        }
        c.input = Some(input);
        self.post_send(conn);
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if !c.closing && !c.broken && c.owed.len() < MAX_OWED {
            self.post_recv(conn);
        }
        self.close_if_done(conn);
    }

    /// Hands what is owed to one `WSASend`, unless one is in flight.
    fn post_send(&mut self, conn: usize) {
        let c = &mut self.conns[conn];
        if c.send_in_flight || c.owed.is_empty() {
            return;
        }
        let buf = mem::take(&mut c.owed);
        self.send_from(conn, buf, 0);
    }

    fn send_from(&mut self, conn: usize, buf: Vec<u8>, sent: usize) {
        let c = &mut self.conns[conn];
        let socket = c.stream.as_raw_socket() as SOCKET;
        let mut operation = Box::new(Operation {
            overlapped: OVERLAPPED::default(),
            kind: Kind::Send { conn, buf, sent },
        });
        let Kind::Send { buf, sent, .. } = &mut operation.kind else {
            unreachable!()
        };
        let rest = &mut buf[*sent..];
        let wsabuf = WSABUF {
            len: rest.len() as u32,
            buf: rest.as_mut_ptr(),
        };
        let overlapped = ptr::from_mut(&mut operation.overlapped);
        // SAFETY: the bytes and the OVERLAPPED belong to `operation`, filed
        // in callback_map until its completion.
        let rc = unsafe { WSASend(socket, &wsabuf, 1, ptr::null_mut(), 0, overlapped, None) };
        c.send_in_flight = true;
        if let Err((e, _)) = self.try_post(operation, rc == 0) {
            let c = &mut self.conns[conn];
            c.send_in_flight = false;
            debug!("{}: WSASend: {e}", c.peer);
            self.break_off(conn);
        }
    }

    /// A send completed: `result` more bytes were taken.
    fn on_sent(&mut self, conn: usize, mut buf: Vec<u8>, sent: usize, result: io::Result<usize>) {
        let c = &mut self.conns[conn];
        c.send_in_flight = false;
        if c.broken {
            return self.free_if_idle(conn);
        }
        let n = match result {
            Ok(n) => n,
            Err(e) => {
                debug!("{} send failed: {e}", c.peer);
                return self.break_off(conn);
            }
        };
        let sent = sent + n;
        if sent < buf.len() {
            // A short send: post the rest.
            return self.send_from(conn, buf, sent);
        }
        if c.owed.is_empty() && buf.capacity() <= KEEP_CAPACITY {
            buf.clear();
            c.owed = buf;
        }
        self.post_send(conn);
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if c.input.is_some() && !c.closing && !c.broken && c.owed.len() < MAX_OWED {
            self.post_recv(conn);
        }
        self.close_if_done(conn);
    }

    fn close_if_done(&mut self, conn: usize) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if c.closing && c.owed.is_empty() && !c.send_in_flight && c.input.is_some() {
            shared::net::close_gracefully(&c.stream);
            info!("{} closed", c.peer);
            self.conns.remove(conn);
        }
    }

    /// A receive or send failed: shutting the socket down completes what is
    /// still in flight; the connection is freed after the last completion.
    fn break_off(&mut self, conn: usize) {
        let c = &mut self.conns[conn];
        c.broken = true;
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
        self.free_if_idle(conn);
    }

    fn free_if_idle(&mut self, conn: usize) {
        let c = &self.conns[conn];
        if c.input.is_some() && !c.send_in_flight {
            debug!("{} dropped", c.peer);
            self.conns.remove(conn);
        }
    }
}
