//! Many connections at once: a crowd of thousands, opened concurrently,
//! each making one round trip, then held; and a burst, in which part of
//! the crowd sends a line at the same instant.
//!
//! The tests that use these hold 15 000 connections, and this process may
//! hold 20 000 descriptors in all: so they run one at a time, whatever test
//! threads the harness runs ([`one_at_a_time`]), and each crate keeps them
//! in a test binary of their own (`tests/scale.rs`), away from the other
//! tests' descriptors.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::thread;

use super::TIMEOUT;

/// Threads that open the crowd: enough that a loop which costs O(n) per
/// pass (the busy loop, poll) still sees many clients per pass.
const OPENERS: usize = 64;

/// Held while a test holds a crowd.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static CROWD: Mutex<()> = Mutex::new(());
    CROWD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens `n` connections to `addr` from [`OPENERS`] threads at once; on
/// each, `round_trip(stream, i)` makes one exchange and says whether its
/// answer was right. Returns the connections, in order; panics, naming the
/// first, if any connect fails or any answer is wrong.
pub fn open_crowd(
    addr: SocketAddr,
    n: usize,
    round_trip: impl Fn(&mut TcpStream, usize) -> Result<(), String> + Sync,
) -> Vec<TcpStream> {
    let round_trip = &round_trip;
    let per = n.div_ceil(OPENERS);
    let parts: Vec<Vec<TcpStream>> = thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(per)
            .map(|first| {
                s.spawn(move || {
                    (first..(first + per).min(n))
                        .map(|i| {
                            let mut c = TcpStream::connect(addr)
                                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                            c.set_read_timeout(Some(TIMEOUT)).expect("timeout");
                            if let Err(why) = round_trip(&mut c, i) {
                                panic!("connection {i}: {why}");
                            }
                            c
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    parts.into_iter().flatten().collect()
}

/// Every connection in `crowd` sends its `request(i)` before any reads;
/// then each reads until `done` says its reply is whole, and checks it.
/// Returns how many replies were right; a wrong one panics.
pub fn burst(
    crowd: &mut [TcpStream],
    request: impl Fn(usize) -> Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
    check: impl Fn(&[u8], usize) -> Result<(), String>,
) -> usize {
    for (i, c) in crowd.iter_mut().enumerate() {
        c.write_all(&request(i))
            .unwrap_or_else(|e| panic!("burst write {i}: {e}"));
    }
    for (i, c) in crowd.iter_mut().enumerate() {
        let got = read_reply(c, &done).unwrap_or_else(|why| panic!("burst: connection {i}: {why}"));
        if let Err(why) = check(&got, i) {
            panic!("burst: connection {i}: {why}");
        }
    }
    crowd.len()
}

/// Reads from `c` until `done` says the bytes so far are a whole reply.
pub fn read_reply(c: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&got) {
        match c.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {got:?}")),
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) => return Err(format!("{e} after {got:?}")),
        }
    }
    Ok(got)
}
