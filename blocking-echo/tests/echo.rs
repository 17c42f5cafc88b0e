//! Black-box tests of blocking-echo in each of its modes.

use std::time::Duration;

use testkit::TestServer;
use testkit::suite::EchoSpec;

const BIN: &str = env!("CARGO_BIN_EXE_blocking-echo");

mod serial {
    testkit::echo_suite!(testkit::suite::EchoSpec {
        bin: super::BIN,
        args: &["--mode", "serial"],
        suffix: "",
        concurrent: false,
        busy_polls: false,
    });
}

mod thread {
    testkit::echo_suite!(testkit::suite::EchoSpec {
        bin: super::BIN,
        args: &["--mode", "thread"],
        suffix: "",
        concurrent: true,
        busy_polls: false,
    });
}

mod pool {
    testkit::echo_suite!(testkit::suite::EchoSpec {
        bin: super::BIN,
        args: &["--mode", "pool", "--workers", "4"],
        suffix: "",
        concurrent: true,
        busy_polls: false,
    });
}

#[cfg(unix)]
mod fork {
    testkit::echo_suite!(
        testkit::suite::EchoSpec {
            bin: super::BIN,
            args: &["--mode", "fork"],
            suffix: "",
            concurrent: true,
            busy_polls: false,
        },
        forks
    );
}

/// How long a client must go unanswered to count as "waiting".
const WAIT: Duration = Duration::from_millis(300);

/// The article's serial loop: a second client is not answered until the
/// first one leaves, and then it is.
#[test]
fn serial_second_client_waits_for_the_first() {
    let server = TestServer::start(BIN, &["--mode", "serial"]);
    let mut first = server.connect();
    assert_eq!(first.request("first"), "FIRST\n");

    let mut second = server.connect();
    second.send(b"second\n");
    assert!(
        second.is_silent_for(WAIT),
        "second client answered while the first was served"
    );
    assert_eq!(first.request("still first"), "STILL FIRST\n");

    drop(first);
    assert_eq!(second.read_line().unwrap(), b"SECOND\n");
}

/// Pool mode with one worker and a queue of one: the third client finds the
/// queue full and is told so; the queued one is served once the worker frees.
#[test]
fn pool_refuses_when_the_queue_is_full() {
    let server = TestServer::start(BIN, &["--mode", "pool", "--workers", "1", "--queue", "1"]);
    let mut busy = server.connect();
    assert_eq!(busy.request("in a worker"), "IN A WORKER\n");

    // Accepted in order, so `queued` takes the one place before `refused`.
    let mut queued = server.connect();
    queued.send(b"queued\n");
    let mut refused = server.connect();
    assert_eq!(refused.read_line().unwrap(), b"ERR server full\n");
    assert_eq!(refused.read_to_end().unwrap(), b"");
    testkit::suite::says_it_refuses(&server, "all 1 workers busy and 1 connections queued");

    assert!(
        queued.is_silent_for(WAIT),
        "queued client answered with the only worker busy"
    );
    drop(busy);
    assert_eq!(queued.read_line().unwrap(), b"QUEUED\n");
}

/// Pool mode takes as many clients arriving at once as it has workers and
/// places in its queue: a worker that has not yet taken its first client
/// leaves room, it is not a full queue. Eight clients connect to four
/// workers and a queue of four while the server is stopped (SIGSTOP), and
/// a ninth after them, so that all nine wait in the listen queue and are
/// accepted back to back when it resumes; the ninth is told `ERR server
/// full`. The acceptor writes refusals in the order it accepts, so a
/// refusal to any of the eight would already be in its socket when the
/// ninth's arrives: none may have one. Then each of the eight is answered,
/// the queued ones as the served ones leave.
#[cfg(unix)]
#[test]
fn pool_takes_a_burst_up_to_its_capacity() {
    let server = TestServer::start(BIN, &["--mode", "pool", "--workers", "4", "--queue", "4"]);
    let signal = |sig| {
        // SAFETY: kill only sends a signal, to the server this test started.
        assert_eq!(unsafe { libc::kill(server.pid() as libc::pid_t, sig) }, 0);
    };
    signal(libc::SIGSTOP);
    let mut burst: Vec<_> = (0..8).map(|_| server.connect()).collect();
    let mut ninth = server.connect();
    signal(libc::SIGCONT);
    let ninth_got = ninth.read_line();
    // A refusal would already be there: a moment's wait only says so.
    let refused: Vec<usize> = (0..8)
        .filter(|&i| !burst[i].is_silent_for(Duration::from_millis(1)))
        .collect();
    assert!(
        refused.is_empty(),
        "clients {refused:?} of the 8, within the pool's capacity, were refused or closed \
         (the ninth got {ninth_got:?})\n{}",
        server.log()
    );
    assert_eq!(ninth_got.unwrap(), b"ERR server full\n");
    // Each asks and leaves once answered, which frees a worker for one that
    // is queued.
    let served: Vec<_> = burst
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| std::thread::spawn(move || client.request(&format!("client {i}"))))
        .collect();
    for (i, reply) in served.into_iter().enumerate() {
        assert_eq!(reply.join().unwrap(), format!("CLIENT {i}\n"));
    }
}

/// Pool mode under a descriptor limit lower than workers plus queue:
/// `RLIMIT_NOFILE` 64 leaves room for 48 clients (64 less the 16 a server
/// keeps), so with 16 workers and a queue of 200, of 100 clients 16 are
/// served, 32 wait in the queue, and the other 52 are told `ERR server
/// full` at once rather than left unanswered in the listen queue. The
/// queued ones are served as workers free.
#[cfg(unix)]
#[test]
fn pool_refuses_past_the_descriptor_limit() {
    use std::sync::mpsc;
    use std::time::Instant;

    use testkit::{LineClient, TIMEOUT};

    const CLIENTS: usize = 100;
    const WORKERS: usize = 16;
    const ROOM: usize = 64 - 16;
    let mut command = std::process::Command::new(BIN);
    command.args(["--mode", "pool", "--workers", "16", "--queue", "200"]);
    testkit::limit_descriptors(&mut command, 64, 64);
    let server = TestServer::start_command(command);
    // Each client sends its line, and a thread of its own reads the first
    // answer, so a queued client's silence holds up nobody else.
    let (answers, answered) = mpsc::channel::<(usize, Vec<u8>, LineClient)>();
    let started = Instant::now();
    for i in 0..CLIENTS {
        let mut client = server.connect();
        client.send(format!("client {i}\n").as_bytes());
        let answers = answers.clone();
        std::thread::spawn(move || {
            if let Ok(line) = client.read_line() {
                let _ = answers.send((i, line, client));
            }
        });
    }
    let mut served = Vec::new();
    let mut refused = 0;
    while served.len() + refused < CLIENTS - (ROOM - WORKERS) {
        let (i, line, client) = answered.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "{} served, {refused} refused: the rest unanswered",
                served.len()
            )
        });
        if line == b"ERR server full\n" {
            refused += 1;
        } else {
            assert_eq!(line, format!("CLIENT {i}\n").as_bytes());
            served.push(client);
        }
    }
    eprintln!(
        "pool at RLIMIT_NOFILE 64: {} served, {refused} refused in {:?}",
        served.len(),
        started.elapsed()
    );
    assert_eq!((served.len(), refused), (WORKERS, CLIENTS - ROOM));
    testkit::suite::says_it_refuses(&server, &format!("{ROOM} connections (RLIMIT_NOFILE 64)"));
    // The queued 32 are served as the workers free, each leaving once
    // answered so that the next one's turn comes.
    drop(served);
    for _ in 0..ROOM - WORKERS {
        let (i, line, _client) = answered
            .recv_timeout(TIMEOUT)
            .expect("a queued client served");
        assert_eq!(line, format!("CLIENT {i}\n").as_bytes());
    }
}

/// Fork mode wakes its loop through a socket pair that its signal handler
/// writes a byte into: children that exit fast during a long accept burst
/// can fill it, and a SIGTERM's byte is then dropped. The stop must still
/// happen. The test fills the pair itself: it takes copies of the server's
/// two Unix sockets (`pidfd_getfd`, Linux 5.6, allowed to the parent of
/// the process), stops the server, writes SIGCHLD's byte until neither
/// takes more, sends SIGTERM (its handler runs on SIGCONT, into the full
/// pair) and lets it go on. It must end by SIGTERM, with no byte saying so.
#[cfg(target_os = "linux")]
#[test]
fn fork_mode_stops_when_its_wake_up_pair_is_full() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    let server = TestServer::start(BIN, &["--mode", "fork"]);
    let pid = server.pid() as libc::pid_t;
    let sockets = match testkit::proc::socket_copies(server.pid()) {
        Ok(sockets) => sockets,
        Err(e) if testkit::proc::pidfd_refused(&e) => return,
        Err(e) => panic!("the server's sockets: {e}"),
    };
    // The listener is a TCP socket; the pair's two ends are Unix ones.
    let mut pair: Vec<UnixStream> = sockets
        .into_iter()
        .filter(|(_, s)| {
            testkit::proc::socket_option(s, libc::SOL_SOCKET, libc::SO_DOMAIN)
                == Some(libc::AF_UNIX)
        })
        .map(|(_, s)| UnixStream::from(s))
        .collect();
    assert_eq!(pair.len(), 2, "the server's wake-up pair");
    let signal = |sig| {
        // SAFETY: kill only sends a signal, to the server this test started.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    };
    signal(libc::SIGSTOP);
    for end in &mut pair {
        end.set_nonblocking(true).unwrap();
        while end.write(&[libc::SIGCHLD as u8; 256]).is_ok_and(|n| n > 0) {}
    }
    signal(libc::SIGTERM);
    signal(libc::SIGCONT);
    let mut server = server;
    assert!(
        testkit::eventually(|| server.try_exit_status().is_some()),
        "the SIGTERM was lost in a full wake-up pair: the server goes on"
    );
    use std::os::unix::process::ExitStatusExt;
    let status = server.try_exit_status().expect("exited");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

/// A thread per connection: two clients that pipeline without pause take
/// a thread each, and the scheduler, not a loop, gives the third its turn.
#[test]
fn thread_a_flooder_does_not_hold_the_loop() {
    testkit::suite::a_flooder_does_not_hold_the_loop(&thread::SPEC, false);
}

/// The pool: a worker serves one client until it leaves, so the two
/// flooders and the third need three workers; the pool module's spec has four.
#[test]
fn pool_a_flooder_does_not_hold_the_loop() {
    testkit::suite::a_flooder_does_not_hold_the_loop(&pool::SPEC, false);
}

/// A process per connection: the flooders' children hold up no one else.
#[cfg(unix)]
#[test]
fn fork_a_flooder_does_not_hold_the_loop() {
    testkit::suite::a_flooder_does_not_hold_the_loop(&fork::SPEC, false);
}

/// Thread mode stops at --max-conns threads: more clients are refused, and
/// places free when clients leave.
#[test]
fn thread_mode_caps_connections() {
    testkit::suite::refuses_past_max_conns(&thread::SPEC);
}

/// Thread mode's threads end with their connections.
#[cfg(target_os = "linux")]
#[test]
fn thread_mode_threads_end_with_their_clients() {
    use testkit::{eventually, proc};
    let server = TestServer::start(BIN, &["--mode", "thread"]);
    let baseline = proc::thread_count(server.pid());
    let mut clients: Vec<_> = (0..20).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.request(&format!("c{i}")), format!("C{i}\n"));
    }
    assert_eq!(proc::thread_count(server.pid()), baseline + 20);
    drop(clients);
    assert!(eventually(|| proc::thread_count(server.pid()) == baseline));
}

#[test]
fn suite_spec_reply_matches_protocol() {
    let spec = EchoSpec {
        bin: BIN,
        args: &[],
        suffix: "",
        concurrent: false,
        busy_polls: false,
    };
    assert_eq!(spec.reply("abc"), "ABC\n");
}

/// A flag the chosen mode would ignore is refused, and so is a value that
/// makes no sense; every numeric flag words its range the same way.
#[test]
fn flags_that_cannot_apply_are_refused() {
    use testkit::cli::refused;
    let cases: &[(&[&str], &str)] = &[
        (
            &["--workers", "3"],
            "--workers does not apply to --mode serial",
        ),
        (
            &["--mode", "serial", "--queue", "3"],
            "--queue does not apply to --mode serial",
        ),
        (
            &["--max-conns", "5"],
            "--max-conns does not apply to --mode serial",
        ),
        (
            &["--mode", "thread", "--workers", "3"],
            "--workers does not apply to --mode thread",
        ),
        (
            &["--mode", "thread", "--queue", "3"],
            "--queue does not apply to --mode thread",
        ),
        (
            &["--mode", "fork", "--queue", "3"],
            "--queue does not apply to --mode fork",
        ),
        (
            &["--mode", "pool", "--max-conns", "5"],
            "--max-conns does not apply to --mode pool",
        ),
        (
            &["--mode", "pool", "--workers", "0"],
            "must be a whole number, from 1 to 65535",
        ),
        (
            &["--mode", "pool", "--workers", "70000"],
            "must be a whole number, from 1 to 65535",
        ),
        (
            &["--mode", "pool", "--queue", "-1"],
            "must be a whole number, from 0 to 1000000",
        ),
        (
            &["--mode", "thread", "--max-conns", "0"],
            "must be a whole number, at least 1",
        ),
        (
            &["--backlog", "0"],
            "must be a whole number, from 1 to 2147483647",
        ),
        (&["--max-line", "0"], "must be a whole number, at least 1"),
        (&["--addr", "localhost"], "expected IP:PORT or HOST:PORT"),
        (
            &["--addr", "no-such-host.invalid:5464"],
            "cannot resolve the host name",
        ),
    ];
    for (args, why) in cases {
        refused(BIN, args, why);
    }
}

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_blocking-echo"));
}

/// The children of a forking server, from /proc.
#[cfg(target_os = "linux")]
fn children(server: &TestServer) -> Vec<u32> {
    testkit::proc::tree(server.pid()).split_off(1)
}

/// Fork mode reaps each child when it exits (on SIGCHLD), not at the next
/// accept: 200 clients come and go while 5 others stay, and within a second
/// of the last leaving no child is a zombie and exactly the 5 are left.
#[cfg(target_os = "linux")]
#[test]
fn fork_leaves_no_zombies() {
    use std::time::Instant;

    use testkit::proc;
    let server = TestServer::start(BIN, &["--mode", "fork"]);
    let mut stay: Vec<_> = (0..5).map(|_| server.connect()).collect();
    for (i, c) in stay.iter_mut().enumerate() {
        assert_eq!(c.request(&format!("stay {i}")), format!("STAY {i}\n"));
    }
    for i in 0..200 {
        let mut c = server.connect();
        assert_eq!(
            c.request(&format!("come and go {i}")),
            format!("COME AND GO {i}\n")
        );
    }
    // The last client's child may still be finishing its reply.
    let left = Instant::now();
    let deadline = left + Duration::from_secs(1);
    let settled = loop {
        let (zombies, live) = (proc::zombie_children(server.pid()), children(&server).len());
        if zombies == 0 && live == 5 {
            break true;
        }
        if Instant::now() > deadline {
            eprintln!("after 1 s: {zombies} zombies, {live} children");
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(settled, "children left over a second after their clients");
    eprintln!(
        "children settled {:?} after the last client left",
        left.elapsed()
    );
    for (i, c) in stay.iter_mut().enumerate() {
        assert_eq!(c.request(&format!("still {i}")), format!("STILL {i}\n"));
    }
}

/// A child killed mid-connection costs its client only: the parent reaps it
/// and serves the next client.
#[cfg(target_os = "linux")]
#[test]
fn fork_killed_child_leaves_the_parent_serving() {
    use testkit::{eventually, proc};
    let server = TestServer::start(BIN, &["--mode", "fork"]);
    let mut victim = server.connect();
    assert_eq!(
        victim.request("about to lose my process"),
        "ABOUT TO LOSE MY PROCESS\n"
    );
    let kids = children(&server);
    assert_eq!(kids.len(), 1, "one client, one child: {kids:?}");
    // SAFETY: kill only sends a signal, to a process this test started.
    let sent = unsafe { libc::kill(kids[0] as libc::pid_t, libc::SIGKILL) };
    assert_eq!(sent, 0);
    // Its client sees the connection end.
    assert!(victim.read_to_end().map_or(true, |rest| rest.is_empty()));
    assert!(eventually(
        || children(&server).is_empty() && proc::zombie_children(server.pid()) == 0
    ));
    let mut next = server.connect();
    assert_eq!(next.request("next"), "NEXT\n");
}

/// Stopping the server (SIGTERM) ends its children too: the parent passes
/// the signal on and waits for them.
#[cfg(target_os = "linux")]
#[test]
fn fork_stopping_the_server_ends_its_children() {
    use testkit::eventually;
    let mut server = TestServer::start(BIN, &["--mode", "fork"]);
    let mut clients: Vec<_> = (0..3).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.request(&format!("c{i}")), format!("C{i}\n"));
    }
    let kids = children(&server);
    assert_eq!(kids.len(), 3);
    // SAFETY: kill only sends a signal, to a process this test started.
    let sent = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
    assert!(
        eventually(|| server.try_exit_status().is_some()),
        "the parent did not exit"
    );
    for pid in kids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} outlived the server"
        );
    }
    for mut c in clients {
        assert!(c.read_to_end().map_or(true, |rest| rest.is_empty()));
    }
}
