//! Black-box tests of sigio-echo: the echo suite, and a crowd.
#![cfg(target_os = "linux")]

mod common;

use common::SPEC;

mod protocol {
    testkit::echo_suite!(super::SPEC);
}

/// 2000 clients at once: every one served, each again afterwards, then a
/// newcomer. Their signals queue (or overflow; either way nobody is lost).
#[test]
fn two_thousand_clients_at_once() {
    testkit::suite::all_served_at_once(&SPEC, 2000);
}

/// Two clients that pipeline without pause do not hold the loop: a third
/// is answered meanwhile, and the log shows the per-turn budget at work.
#[test]
fn a_flooder_does_not_hold_the_loop() {
    testkit::suite::a_flooder_does_not_hold_the_loop(&SPEC, true);
}

/// Past --max-conns, a client is told and closed; the rest are served.
#[test]
fn refuses_past_max_conns() {
    testkit::suite::refuses_past_max_conns(&SPEC);
}

/// Waiting for a signal costs nothing: ten idle clients, no CPU to speak of.
#[test]
fn idle_connections_cost_no_cpu() {
    testkit::suite::idle_costs_no_cpu(&SPEC);
}

/// An idle connection holds no buffer: 2000 connections that each made a
/// round trip add less than 1 KiB apiece.
#[test]
fn an_idle_connection_holds_no_buffer() {
    testkit::suite::memory_per_spoken_connection(&SPEC, 2000, 1024);
}

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_sigio-echo"));
}

/// A connection cut short by the per-turn budget (16 reads) gets its next
/// share after every batch of signals, not only once no signal is waiting.
///
/// 2048 clients, in pairs, make round trips without pause: a reply on one
/// of a pair is answered at once by a request on the other, so each pair
/// always has a request, and its signal, waiting, and a thousand signals
/// stay queued (a batch takes 64). Meanwhile one more client pipelines
/// 4 MiB of lines, about four turns' worth, and reads the replies. Every
/// reply must arrive before the pairs' 51 200 round trips are over: a loop
/// that came back to a cut-short connection only when the signal queue was
/// empty would leave it waiting until they end.
///
/// The test and the server share one CPU, the server at a lower priority:
/// the clients run whenever they can, so the server cannot outrun the pairs
/// and empty the queue now and then, and the pipelining client keeps up
/// with the pairs as well as they keep up with each other.
#[test]
fn a_cut_short_connection_is_served_while_signals_keep_coming() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::thread;

    const THREADS: usize = 2;
    const PER_THREAD: usize = 1024;
    const PAIRS: u64 = (THREADS * PER_THREAD / 2) as u64;
    const ROUNDS: u64 = 50;
    const PIPELINED: usize = 4 << 20;
    assert!(testkit::raise_nofile_limit(8192) >= (2 * THREADS * PER_THREAD + 100) as u64);
    // This thread, the threads it starts and the server it forks.
    pin_to_one_cpu();
    let mut command = std::process::Command::new(SPEC.bin);
    // The budget's debug line only: one line per signal would slow the loop.
    command.env("RUST_LOG", "sigio_echo=debug/cut short");
    lower_priority(&mut command, 10);
    let server = testkit::TestServer::start_command(command);
    // 64 bytes a line, 1024 lines a write.
    let line = "pipelined past one turn's reads, answered between the batches..\n";
    assert_eq!(line.len(), 64);
    let block = line.repeat(1024);
    // Any read of up to 64 KiB, from any place in a line, is a slice of this.
    let replies = line.to_ascii_uppercase().repeat(2 * 1024);
    let stop = AtomicBool::new(false);
    let round_trips = AtomicU64::new(0);
    thread::scope(|s| {
        // Ends the round trips however the test ends, a failed assertion too.
        let _stop = testkit::SetOnDrop(&stop);
        for t in 0..THREADS {
            // One round trip each, one client at a time: every one is
            // accepted before the next connects, so none waits in an
            // overflowing listen queue (it would join seconds late).
            let clients: Vec<_> = (0..PER_THREAD)
                .map(|_| {
                    let mut c = server.connect();
                    assert_eq!(c.request("hello"), SPEC.reply("hello"));
                    c
                })
                .collect();
            let (stop, round_trips) = (&stop, &round_trips);
            s.spawn(move || round_trips_in_pairs(t, clients, ROUNDS, stop, round_trips));
        }
        // The round trips under way (every pair has made one, on average).
        assert!(testkit::eventually(
            || round_trips.load(Ordering::Relaxed) >= PAIRS
        ));

        let victim = server.connect();
        let peer = victim.stream().local_addr().expect("local address");
        let mut writer = victim.stream().try_clone().expect("clone");
        let block = &block;
        s.spawn(move || {
            for _ in 0..PIPELINED / block.len() {
                // A write that stalls is the reader's failure to report.
                if writer.write_all(block.as_bytes()).is_err() {
                    return;
                }
            }
        });
        let mut reader = victim.stream().try_clone().expect("clone");
        let mut got = 0;
        let mut chunk = vec![0u8; 64 << 10];
        while got < PIPELINED {
            let n = match reader.read(&mut chunk) {
                Ok(0) => panic!("closed after {got} bytes of replies"),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!(
                    "{got} of {PIPELINED} bytes of replies came, then none for {:?} ({e})",
                    testkit::TIMEOUT
                ),
            };
            let at = got % line.len();
            assert!(
                chunk[..n] == replies.as_bytes()[at..at + n],
                "a wrong reply past byte {got}"
            );
            got += n;
        }
        let done_at = round_trips.load(Ordering::Relaxed);
        eprintln!(
            "{PIPELINED} bytes answered by round trip {done_at} of {}",
            PAIRS * ROUNDS
        );
        assert!(
            done_at < PAIRS * ROUNDS,
            "the pipelining client's last reply came only once all {} round trips were over",
            PAIRS * ROUNDS
        );
        // The path under test ran: this client was cut short.
        assert!(
            server.logged_text(&format!("{peer} read 16 times this turn")),
            "the pipelining client was never cut short:\n{}",
            server.log()
        );
    });
}

/// `rounds` round trips for every pair of `clients` (fewer, if `stop`):
/// a reply on one of a pair, checked byte for byte, is answered at once by
/// a request on the other (epoll says which reply came), so a pair always
/// has one request out.
fn round_trips_in_pairs(
    t: usize,
    clients: Vec<testkit::LineClient>,
    rounds: u64,
    stop: &std::sync::atomic::AtomicBool,
    round_trips: &std::sync::atomic::AtomicU64,
) {
    use std::io::{ErrorKind, Read, Write};
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering;

    // Each client asks the same every time: nothing to build per round trip.
    let requests: Vec<String> = (0..clients.len())
        .map(|i| format!("round trips from thread {t}, client {i}\n"))
        .collect();
    let replies: Vec<Vec<u8>> = requests
        .iter()
        .map(|r| r.to_ascii_uppercase().into_bytes())
        .collect();
    let mut streams: Vec<_> = clients
        .iter()
        .map(|c| c.stream().try_clone().expect("clone"))
        .collect();
    let mut partial: Vec<Vec<u8>> = vec![Vec::new(); streams.len()];
    let mut left = vec![rounds; streams.len() / 2];
    let mut busy = left.len();
    // SAFETY: epoll_create1 takes no pointers.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    for (i, s) in streams.iter_mut().enumerate() {
        s.set_nonblocking(true).expect("non-blocking");
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: epoll_ctl reads one epoll_event: a live local.
        let added = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut event) };
        assert_eq!(added, 0, "epoll_ctl");
        if i % 2 == 0 {
            s.write_all(requests[i].as_bytes()).expect("request");
        }
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = [0u8; 256];
    while busy > 0 && !stop.load(Ordering::Relaxed) {
        // SAFETY: epoll_wait writes at most `maxevents` entries: the
        // vector's length, borrowed mutably for the call.
        let ready = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 100) };
        for e in &events[..ready.max(0) as usize] {
            let i = e.u64 as usize;
            let n = match streams[i].read(&mut buf) {
                Ok(0) => panic!("the server closed round-trip client {i}"),
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    continue;
                }
                Err(e) => panic!("round-trip client {i}: {e}"),
            };
            partial[i].extend_from_slice(&buf[..n]);
            if partial[i].last() != Some(&b'\n') {
                continue;
            }
            assert_eq!(partial[i], replies[i]);
            partial[i].clear();
            round_trips.fetch_add(1, Ordering::Relaxed);
            left[i / 2] -= 1;
            if left[i / 2] == 0 {
                busy -= 1;
                continue;
            }
            // On the other of the pair. On the same connection, sent at
            // once (this thread runs before the server), it would be there
            // for the server's next read in the same turn, and every
            // connection would be cut short in its turn too; this way its
            // turn ends with a read that would block, and the request waits
            // for its signal. A line this short always fits in an empty
            // send buffer.
            streams[i ^ 1]
                .write_all(requests[i ^ 1].as_bytes())
                .expect("request");
        }
    }
    // SAFETY: `ep` is this function's own descriptor, closed once.
    unsafe { libc::close(ep) };
}

/// Keeps the calling thread, and the threads and processes it starts from
/// now on, on the first CPU it may run on.
fn pin_to_one_cpu() {
    // SAFETY: sched_getaffinity and sched_setaffinity read or write
    // `cpusetsize` bytes of a set: live locals of that size; the CPU_*
    // macros stay inside a set (`cpu` is below CPU_SETSIZE). 0 is the
    // calling thread.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut allowed),
            0
        );
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&cpu| libc::CPU_ISSET(cpu, &allowed))
            .expect("a CPU");
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one),
            0
        );
    }
}

/// Starts `command` at a lower priority (`nice` added to its nice value):
/// the test's threads on its CPU run before it whenever they can.
fn lower_priority(command: &mut std::process::Command, nice: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls setpriority, a plain system call, for the child itself.
    unsafe {
        command.pre_exec(move || {
            if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
