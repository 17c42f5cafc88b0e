//! Article 001 §7's selectors echo server in one file. `polling` plays Python's `DefaultSelector`
//! (epoll, kqueue, event ports, IOCP); each socket is registered with data, what to call when it
//! is ready (`accept`, `read`). The loop blocks only in the wait, then calls back; the reads never
//! wait. Read it first, beside the article; `src/main.rs`, the server, adds limits.

use polling::{AsRawSource, AsSource, Event, Events, PollMode, Poller};
use std::{collections::HashMap, convert::Infallible, io, io::ErrorKind, io::Read, io::Write};
use std::{net::TcpListener, net::TcpStream, process::ExitCode};

fn run(addr: &str) -> io::Result<Infallible> {
    let (poller, keys) = (Poller::new()?, HashMap::new());
    let mut sel = Selector { poller, keys }; // `sel = selectors.DefaultSelector()`
    // bind, listen(5), setblocking(False); std: SO_REUSEADDR, the usual backlog (5 overflows).
    let server_fileobj = TcpListener::bind(addr)
        .map_err(|e| io::Error::other(format!("cannot listen on {addr}: {e}")))?;
    server_fileobj.set_nonblocking(true)?;
    let addr = server_fileobj.local_addr()?;
    sel.register(server_fileobj, accept)?; // `(server_fileobj, EVENT_READ, accept)`
    println!("listening on {addr}"); // ready: the listener is watched; flushed at its \n

    let mut events = Events::new();
    loop {
        // `events = sel.select()`; polling retries a wait a signal cuts short.
        events.clear();
        sel.poller.wait(&mut events, None)?;
        for mask in events.iter() {
            // `callback = sel_obj.data; callback(…)`; the key is out of `sel` while it runs.
            if let Some(mut sel_obj) = sel.keys.remove(&mask.key) {
                let callback = &mut sel_obj.data;
                if callback(&mut sel, mask) {
                    sel.keys.insert(mask.key, sel_obj);
                }
            }
        }
    }
}

/// `accept(server_fileobj, mask)`: takes a client, registered with `read`.
fn accept(server_fileobj: TcpListener) -> Callback {
    Box::new(move |sel: &mut Selector, _mask: Event| {
        let registered = server_fileobj.accept().and_then(|(conn, _addr)| {
            conn.set_nonblocking(true)?;
            sel.register(conn, read)
        });
        match registered {
            Err(e) if e.kind() != ErrorKind::WouldBlock => eprintln!("accept: {e}"),
            _ => {} // registered, or WouldBlock: the client left first
        }
        true
    })
}

/// `read(conn, mask)`: `conn.recv`, then `conn.send` each line upper-cased.
fn read(mut conn: TcpStream) -> Callback {
    let (mut line, mut wdata, mut events) = (Vec::new(), Vec::new(), (true, false));
    Box::new(move |sel: &mut Selector, mask: Event| {
        let mut reading = events.0;
        if mask.readable {
            let mut data = [0; 1024];
            match conn.read(&mut data) {
                // `if not data`: done sending; a last line without \n is answered as a line.
                Ok(0) => {
                    reading = false;
                    let rest: &[u8] = if line.is_empty() { b"" } else { b"\n" };
                    answer(&mut line, rest, &mut wdata);
                }
                // `data.upper() + b'_SB'`, framed: one recv is not a message.
                Ok(n) => answer(&mut line, &data[..n], &mut wdata),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {} // no data after all
                Err(_) => return close(sel, &conn),               // `except Exception`
            }
        }
        // `conn.send(...)`; the rest waits for EVENT_WRITE (the article's is lost).
        if !wdata.is_empty() {
            match conn.write(&wdata) {
                Ok(n) => drop(wdata.drain(..n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return close(sel, &conn),
            }
        }
        let writing = !wdata.is_empty();
        if !reading && !writing {
            return close(sel, &conn);
        }
        // The port's own `sel.modify`: EVENT_WRITE only while owed, lest level-triggered waits spin.
        if (reading, writing) != events {
            events = (reading, writing);
            let want = Event::new(mask.key, reading, writing);
            let modified = sel.poller.modify_with_mode(&conn, want, PollMode::Level);
            return modified.is_ok() || close(sel, &conn);
        }
        true
    })
}

/// `sel.unregister(conn)`; `conn.close()` follows when the callback is dropped.
fn close(sel: &mut Selector, conn: &TcpStream) -> bool {
    eprintln!("closing {conn:?}");
    let _ = sel.poller.delete(conn);
    false
}

/// Each whole line, upper-cased (`data.upper()`) and with `_SB`, into `wdata`; the rest in `line`.
fn answer(line: &mut Vec<u8>, data: &[u8], wdata: &mut Vec<u8>) {
    for &byte in data {
        match byte {
            b'\n' => wdata.extend(line.drain(..).chain(*b"_SB\n")),
            _ => line.push(byte.to_ascii_uppercase()),
        }
    }
}

/// `DefaultSelector`: the poller, and each socket's key by its descriptor.
struct Selector {
    poller: Poller,
    keys: HashMap<usize, SelectorKey>,
}
/// A `SelectorKey`: its data, the callback, owns the socket (the fileobj).
struct SelectorKey {
    data: Callback,
}
/// The callback: given the selector and the `mask`; false once it closed.
type Callback = Box<dyn FnMut(&mut Selector, Event) -> bool>;

impl Selector {
    /// `sel.register(fileobj, EVENT_READ, data)`, level-triggered as Python's.
    fn register<S: AsSource>(&mut self, fileobj: S, data: fn(S) -> Callback) -> io::Result<()> {
        let fd = fileobj.source();
        let (key, mode) = ((&fd).raw() as usize, PollMode::Level);
        // SAFETY: open while registered: its callback owns it, and unregisters it before the drop.
        unsafe { self.poller.add_with_mode(&fd, Event::readable(key), mode)? };
        let data = data(fileobj);
        self.keys.insert(key, SelectorKey { data });
        Ok(())
    }
}

fn main() -> ExitCode {
    // `run` returns only if it fails: the article's loop has no end.
    let Err(e) = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => run("127.0.0.1:8088"), // the article's port, on loopback
        [flag, addr] if flag == "--addr" => run(addr),
        _ => {
            eprintln!("usage: selectors-article [--addr HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
