//! Article 001 §4's select echo server in one file (article 000 has the same program, on port
//! 8000). One thread sleeps in `select(2)` until a socket in `rlist` can be read (the listener:
//! a client waits) or one in `wlist` written, or 0.5 s pass, then reads or writes those at once.
//!
//! Read it first, beside the article. `src/select.rs` is the server: this loop with limits,
//! `ERR server full` at the FD_SETSIZE wall, a pause when descriptors run out, bounded output.
//! Run it with `cargo run -p select-echo --bin select-article` and talk to it with
//! `cargo run -p shared --bin client -- --addr 127.0.0.1:8093`.

#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

#[cfg(unix)]
use std::os::fd::{AsRawFd, RawFd};
use std::{collections::HashMap, convert::Infallible, io, io::ErrorKind, io::Read, io::Write};
use std::{collections::HashSet, net::TcpListener, net::TcpStream, process::ExitCode};

#[cfg(not(unix))] // elsewhere, the model below is not built: only this stand-in
fn run(_: &str) -> Result<Infallible, &'static str> {
    Err("select-article needs select(2) (Linux, macOS, the BSDs)")
}

#[cfg(unix)]
fn run(addr: &str) -> io::Result<Infallible> {
    // The article's bind, listen(5), setblocking(False); std's usual backlog: a burst overflows 5.
    let server = TcpListener::bind(addr)
        .map_err(|e| io::Error::other(format!("cannot listen on {addr}: {e}")))?;
    server.set_nonblocking(true)?;
    if server.as_raw_fd() as usize >= libc::FD_SETSIZE {
        return Err(io::Error::other("listener's descriptor past FD_SETSIZE"));
    }
    println!("listening on {}", server.local_addr()?); // flushed at its \n
    eprintln!("starting...");
    // Python's lists hold the sockets; `socks` owns them (with a line's start), `rlist` names
    // those still read, a set so that each is found at once. `wlist` is made from `wdata` each
    // pass, so the two cannot disagree (the article's do when two reads come before a send).
    let mut rlist: HashSet<RawFd> = HashSet::from([server.as_raw_fd()]);
    let mut wdata: HashMap<RawFd, Vec<u8>> = HashMap::new();
    let mut socks: HashMap<RawFd, (TcpStream, Vec<u8>)> = HashMap::new();
    loop {
        let wlist: Vec<RawFd> = wdata.keys().copied().collect();
        let (rl, wl) = match select(&rlist, &wlist) {
            Ok(ready) => ready,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        eprintln!("{wl:?}");

        for sock in rl {
            if sock == server.as_raw_fd() {
                match server.accept() {
                    // Past FD_SETSIZE, libc's FD_SET panics (a checked array): closed.
                    Ok((conn, _)) if conn.as_raw_fd() as usize >= libc::FD_SETSIZE => {}
                    // Non-blocking (the article's is not): a read never stalls.
                    Ok((conn, _addr)) => {
                        conn.set_nonblocking(true)?;
                        rlist.insert(conn.as_raw_fd());
                        socks.insert(conn.as_raw_fd(), (conn, Vec::new()));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {} // it left
                    Err(e) => eprintln!("accept: {e}"),
                }
                continue;
            }
            let (conn, line) = socks.get_mut(&sock).expect("rlist's are in socks");
            let mut data = [0; 1024];
            match conn.read(&mut data) {
                // `if not data`: the article closes now, so a reply still queued makes its
                // unguarded `send` raise. Here the last fragment is a line; closed once all sent.
                Ok(0) => {
                    rlist.remove(&sock);
                    let rest: &[u8] = if line.is_empty() { b"" } else { b"\n" };
                    answer(line, rest, wdata.entry(sock).or_default());
                }
                // `wdata[sock] = data.upper()`, framed by newline (TCP keeps no message
                // boundaries) and added to what is owed, not replacing it.
                Ok(n) => answer(line, &data[..n], wdata.entry(sock).or_default()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // `except Exception`: dropped, with whatever it is owed.
                Err(_) => {
                    rlist.remove(&sock);
                    wdata.entry(sock).and_modify(Vec::clear); // kept: `wl` may name it
                }
            }
        }
        // `sock.send(wdata[sock])`; what send does not take stays owed (the article loses it).
        for sock in wl {
            let (conn, _) = socks.get_mut(&sock).expect("wlist's are in both");
            let owed = wdata.get_mut(&sock).expect("wlist's are in both");
            match conn.write(owed) {
                Ok(n) => drop(owed.drain(..n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // A reset client: the article's send would raise, ending all.
                Err(_) => {
                    rlist.remove(&sock);
                    owed.clear();
                }
            }
        }
        // `wlist.remove(sock)`, `wdata.pop(sock)` once all sent; neither read nor owed: closed.
        wdata.retain(|_, owed| !owed.is_empty());
        socks.retain(|fd, _| rlist.contains(fd) || wdata.contains_key(fd));
    }
}

/// Python's `select.select(rlist, wlist, [], 0.5)`: sleeps until a socket in `rlist` is readable or
/// one in `wlist` writable, or 0.5 s pass. select overwrites its sets: they are made anew.
#[cfg(unix)]
fn select(rlist: &HashSet<RawFd>, wlist: &[RawFd]) -> io::Result<(Vec<RawFd>, Vec<RawFd>)> {
    let nfds = rlist.iter().chain(wlist).max().map_or(0, |fd| fd + 1);
    // SAFETY: all zeros are an empty fd_set and a zero timeval. Every descriptor is below
    // FD_SETSIZE (`run` sees to it) and nfds, so select reads and writes only our sets.
    unsafe {
        let (mut rl, mut wl, mut timeout): (libc::fd_set, libc::fd_set, libc::timeval) =
            std::mem::zeroed();
        timeout.tv_usec = 500_000;
        rlist.iter().for_each(|&fd| libc::FD_SET(fd, &mut rl));
        wlist.iter().for_each(|&fd| libc::FD_SET(fd, &mut wl));
        if libc::select(nfds, &mut rl, &mut wl, std::ptr::null_mut(), &mut timeout) < 0 {
            return Err(io::Error::last_os_error());
        }
        let rl = rlist.iter().copied().filter(|&fd| libc::FD_ISSET(fd, &rl));
        let wl = wlist.iter().copied().filter(|&fd| libc::FD_ISSET(fd, &wl));
        Ok((rl.collect(), wl.collect()))
    }
}

/// Each whole line, ASCII upper-cased as by `data.upper()`, is moved to `owed`;
/// an unfinished one waits in `line`.
fn answer(line: &mut Vec<u8>, data: &[u8], owed: &mut Vec<u8>) {
    for &byte in data {
        line.push(byte.to_ascii_uppercase());
        if byte == b'\n' {
            owed.append(line);
        }
    }
}

fn main() -> ExitCode {
    // `run` returns only if it fails: the article's loop has no end.
    let Err(e) = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => run("127.0.0.1:8093"), // the article's port, on loopback
        [flag, addr] if flag == "--addr" => run(addr),
        _ => {
            eprintln!("usage: select-article [--addr HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
