//! `--mode pool`: the thread pool article 001 §2 calls the improved fix.
//! `--workers` threads, started once, take accepted connections from a
//! bounded queue and serve each with the same blocking `handle` as the
//! other modes; the accepting thread only accepts and hands over.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::bail;
use shared::limits::Room;
use shared::net::ShortageLog;

use crate::{LiveSlot, accept, admitted, handle};

/// `workers` threads take accepted connections from a queue, where at most
/// `queue` wait while every worker is busy. A full queue is not waited on:
/// blocking the acceptor would only move the wait into the kernel's
/// backlog, where the client cannot tell a slow server from a dead one. It
/// is told `ERR server full` instead.
///
/// Every connection held, queued or being served, holds a descriptor, so
/// the pool holds at most `room` of them (workers plus queue, or fewer
/// where `RLIMIT_NOFILE` allows fewer); one more is refused at once, like
/// one that finds the queue full, rather than left in the backlog by an
/// `accept` failing with EMFILE.
pub fn run(
    listener: TcpListener,
    max_line: usize,
    workers: usize,
    queue: usize,
    room: Room,
) -> anyhow::Result<()> {
    type Job = (TcpStream, SocketAddr, LiveSlot);
    // The bound is `live`, below: every connection held, waiting or served.
    // The channel has a place for each of them, because a job waits in it
    // until a worker takes it, and a burst can arrive before an idle worker
    // has: a channel of only `queue` places would refuse the client after
    // the queue's worth while workers sat idle.
    let (to_workers, jobs) = mpsc::sync_channel::<Job>(room.conns);
    let jobs = Arc::new(Mutex::new(jobs));
    for n in 0..workers {
        let jobs = Arc::clone(&jobs);
        thread::Builder::new()
            .name(format!("worker {n}"))
            .spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job.
                    let job = jobs.lock().expect("no worker panics").recv();
                    let Ok((stream, peer, _slot)) = job else {
                        return;
                    };
                    handle(stream, peer, max_line);
                }
            })?;
    }
    let full = if room.conns < workers + queue {
        room.limit
    } else {
        format!("all {workers} workers busy and {queue} connections queued")
    };
    let live = Arc::new(AtomicUsize::new(0));
    // Ready once every worker is there to take a connection.
    shared::net::announce(&listener)?;
    let mut shortage = ShortageLog::default();
    loop {
        let Some((stream, peer)) = accept(&listener, &mut shortage)? else {
            continue;
        };
        // Only this thread increments, so the check cannot race past it.
        if live.load(Ordering::Acquire) >= room.conns {
            shortage.refusing(&full);
            shared::net::refuse(&stream);
            continue;
        }
        // Never blocks: `live` is under `room.conns`, and every job in the
        // channel holds a slot of it.
        match to_workers.send((stream, peer, LiveSlot::take(&live))) {
            Ok(()) => admitted(peer, &mut shortage),
            Err(_) => bail!("every worker thread has exited"),
        }
    }
}
