//! Article 003's level-triggered epoll HTTP server in one file. One thread
//! registers every socket with an epoll instance and sleeps in `epoll_wait`,
//! which returns the sockets that are ready (the kernel keeps the interest
//! list, so a wait costs the ready sockets, not all of them). Each client's
//! request is read until a blank line ends it; the interest then moves to
//! EPOLLOUT, the article's HTTP/1.0 response is sent, and the socket is shut
//! down; its EPOLLHUP closes it.
//!
//! Read it first, beside the article. `src/main.rs` is the server: HTTP/1.1
//! parsed with keep-alive and pipelining, timeouts, limits, edge-triggered
//! mode. Run `cargo run -p epoll-http --bin epoll-article`, then
//! `curl -v http://127.0.0.1:8080/`.

use std::{convert::Infallible, process::ExitCode};

#[cfg(not(target_os = "linux"))] // elsewhere, the model below is not built: only this stand-in
fn run(_: &str) -> Result<Infallible, &'static str> {
    Err("epoll-article needs Linux (epoll)")
}

#[cfg(target_os = "linux")]
fn run(addr: &str) -> std::io::Result<Infallible> {
    use nix::errno::Errno;
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    use std::collections::HashMap;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{Shutdown, TcpListener};
    use std::os::fd::{AsRawFd, RawFd};

    // The article's request ends and its one response, byte for byte.
    const EOL1: &[u8] = b"\n\n";
    const EOL2: &[u8] = b"\n\r\n";
    const RESPONSE: &[u8] = b"HTTP/1.0 200 OK\r\nDate: Mon, 1 Jan 1996 01:01:01 GMT\r\n\
        Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!";

    // bind, listen(1), setblocking(0); std sets SO_REUSEADDR, as the article does, not a 1 backlog.
    let serversocket = TcpListener::bind(addr)
        .map_err(|e| std::io::Error::other(format!("cannot listen on {addr}: {e}")))?;
    serversocket.set_nonblocking(true)?;
    // `epoll = select.epoll()`, `epoll.register(serversocket.fileno(), EPOLLIN)`.
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let server_fileno = serversocket.as_raw_fd();
    let interest = EpollEvent::new(EpollFlags::EPOLLIN, server_fileno as u64);
    epoll.add(&serversocket, interest)?;
    println!("listening on {}", serversocket.local_addr()?); // flushed at its \n

    // By descriptor, as the article's dicts: each socket, its request so far, its unsent response.
    let mut connections = HashMap::new();
    let mut requests: HashMap<RawFd, Vec<u8>> = HashMap::new();
    let mut responses: HashMap<RawFd, &[u8]> = HashMap::new();
    let mut events = [EpollEvent::empty(); 64];
    loop {
        // `events = epoll.poll(1)`: sleeps at most a second.
        let n = match epoll.wait(&mut events, 1000u16) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for event in &events[..n] {
            let (fileno, event) = (event.data() as RawFd, event.events());
            if fileno == server_fileno {
                match serversocket.accept() {
                    Ok((connection, _address)) => {
                        // A failure here drops this client only, closing it.
                        let fd = connection.as_raw_fd();
                        let interest = EpollEvent::new(EpollFlags::EPOLLIN, fd as u64);
                        let flags = connection.set_nonblocking(true);
                        if let Err(e) = flags.and_then(|()| Ok(epoll.add(&connection, interest)?)) {
                            eprintln!("accept: {e}");
                            continue;
                        }
                        connections.insert(fd, connection);
                        requests.insert(fd, Vec::new());
                        responses.insert(fd, RESPONSE);
                    }
                    // Level-triggered: a client was waiting, and may have left since.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => eprintln!("accept: {e}"),
                }
                continue;
            }
            // Any other descriptor is a connection: it is in all three maps from its
            // `epoll.add` until its `epoll.delete`, and a wait reports a descriptor once.
            let connection = connections.get_mut(&fileno).expect("in all three");
            let request = requests.get_mut(&fileno).expect("in all three");
            let mut hang_up = false;
            if event.contains(EpollFlags::EPOLLIN) {
                // `requests[fileno] += connections[fileno].recv(1024)`.
                let mut data = [0; 1024];
                match connection.read(&mut data) {
                    // The client closed before a whole request: the article
                    // takes recv's b'' for nothing and spins; closed here.
                    Ok(0) => hang_up = true,
                    Ok(n) => request.extend_from_slice(&data[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => hang_up = true, // a reset: the article would crash
                }
                let done = |eol: &[u8]| request.windows(eol.len()).any(|w| w == eol);
                if !hang_up && (done(EOL1) || done(EOL2)) {
                    // A whole request: `epoll.modify(fileno, EPOLLOUT)`.
                    let mut out = EpollEvent::new(EpollFlags::EPOLLOUT, fileno as u64);
                    hang_up = epoll.modify(&*connection, &mut out).is_err();
                    let text = String::from_utf8_lossy(request);
                    eprintln!("{}\n{}", "-".repeat(40), text.trim_end());
                }
            } else if event.contains(EpollFlags::EPOLLOUT) {
                // `byteswritten = connections[fileno].send(responses[fileno])`.
                let response = responses.get_mut(&fileno).expect("every connection's");
                match connection.write(response) {
                    Ok(byteswritten) => *response = &response[byteswritten..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => hang_up = true, // a reset: the article would crash
                }
                if response.is_empty() {
                    // All sent: `epoll.modify(fileno, 0)` and `shutdown`,
                    // after which the kernel reports EPOLLHUP.
                    let mut none = EpollEvent::new(EpollFlags::empty(), fileno as u64);
                    hang_up |= epoll.modify(&*connection, &mut none).is_err();
                    hang_up |= connection.shutdown(Shutdown::Both).is_err();
                }
            } else if event.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
                // `elif event & EPOLLHUP`, and EPOLLERR, which can come alone.
                hang_up = true;
            }
            // `epoll.unregister(fileno)`, `close()`, and `del` for all three
            // dicts (the article forgets `requests` and `responses`).
            if hang_up {
                let connection = connections.remove(&fileno).expect("in connections");
                let _ = epoll.delete(&connection);
                requests.remove(&fileno);
                responses.remove(&fileno);
            }
        }
    }
}

fn main() -> ExitCode {
    // `run` returns only if it fails: the article's loop has no end.
    let Err(e) = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => run("127.0.0.1:8080"), // the article's port, on loopback, not its 0.0.0.0
        [flag, addr] if flag == "--addr" => run(addr),
        _ => {
            eprintln!("usage: epoll-article [--addr HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
