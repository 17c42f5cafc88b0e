//! Thread mode at its thread ceiling (`src/ceiling.rs`): the client past it
//! is told `ERR server full`, the log names the limit, and the server serves
//! on. A test binary of its own: a crowd of 18 000 connections needs most of
//! this process's 20 000 descriptors, so nothing else may run beside it,
//! and the tests here take turns.
#![cfg(target_os = "linux")]

use std::sync::Mutex;

use testkit::suite::{ERR_SERVER_FULL, EchoSpec, crowd, says_it_refuses};
use testkit::{LineClient, TestServer, eventually, raise_nofile_limit};

const SPEC: EchoSpec = EchoSpec {
    bin: env!("CARGO_BIN_EXE_blocking-echo"),
    args: &["--mode", "thread"],
    suffix: "",
    concurrent: true,
    busy_polls: false,
};

/// `n` clients, one after another, each making one round trip and staying:
/// those served, and how many were refused. (One by one, so that the
/// listen queue never overflows while threads start.)
fn one_by_one(server: &TestServer, n: usize) -> (Vec<LineClient>, usize) {
    let mut served = Vec::new();
    let mut refused = 0;
    for i in 0..n {
        let mut client = server.connect();
        let line = format!("client {i}");
        client.send(format!("{line}\n").as_bytes());
        let answer = client.read_line().expect("an answer");
        if answer == SPEC.reply(&line).as_bytes() {
            served.push(client);
        } else {
            assert_eq!(answer, ERR_SERVER_FULL.as_bytes(), "client {i}");
            refused += 1;
        }
    }
    (served, refused)
}

/// One crowd at a time in this process.
static TURN: Mutex<()> = Mutex::new(());

/// The limit a ceiling line names, from the server's warning.
fn ceiling_of(log: &str) -> Option<usize> {
    let at = log.find("past the thread ceiling: at most ")?;
    let rest = &log[at + "past the thread ceiling: at most ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// As many connections as this process can hold (about 18 000 here), each
/// making one round trip, against `--max-conns` 19 000. Where the thread
/// ceiling is lower (`vm.max_map_count` 65 530 allows about 16 000), the
/// clients past it are refused, the log names the limit, and the server,
/// alive, serves a newcomer once some leave. Where the ceiling is higher
/// than the crowd, every client is served; the test below then still runs
/// the refusal path, at a process limit.
#[test]
fn thread_mode_refuses_past_its_thread_ceiling() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let limit = raise_nofile_limit(20_000);
    let n = (limit as usize).saturating_sub(1_500).min(18_000);
    let server = SPEC.start(&["--max-conns", "19000"]);
    let (mut served, refused) = one_by_one(&server, n);
    // Logged before the ready line, but through the log's own pipe: where
    // clients were refused, the line naming the ceiling is waited for.
    if refused > 0 {
        server.logged(|l| ceiling_of(l).is_some());
    }
    let ceiling = ceiling_of(&server.log());
    eprintln!(
        "thread mode, {n} clients: {} served, {refused} refused; ceiling {ceiling:?}",
        served.len()
    );
    assert_eq!(served.len() + refused, n);
    match ceiling {
        Some(threads) if threads < n => {
            assert_eq!(served.len(), threads);
            says_it_refuses(&server, "the thread ceiling");
        }
        _ => assert_eq!(refused, 0),
    }
    served.truncate(served.len().saturating_sub(10));
    assert!(eventually(|| {
        let mut newcomer = server.connect();
        newcomer.send(b"newcomer\n");
        newcomer.read_line().is_ok_and(|l| l == b"NEWCOMER\n")
    }));
    drop(served);
}

/// The same refusal at a limit any machine can be given: the server run as
/// `nobody` under `RLIMIT_NPROC` (root only; the kernel does not hold root
/// to it). Its ceiling is read at start-up from that limit. Then another
/// process of `nobody`'s takes ten of the tasks the limit left, so that
/// starting threads fails below the ceiling as well: that client too is
/// refused, and the server goes on.
#[test]
fn thread_mode_refuses_at_rlimit_nproc() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    const ROOM: u64 = 20;
    let Some(server) = testkit::start_as_nobody(SPEC.bin, SPEC.args, ROOM) else {
        eprintln!("not root: this check needs root to run a server as nobody, and was not run");
        return;
    };
    // Ten tasks of nobody's, the pool's workers, taken after the server
    // read its limit.
    let other = testkit::start_as_nobody(SPEC.bin, &["--mode", "pool", "--workers", "10"], 20)
        .expect("root");
    let c = crowd(&server, &SPEC, 2 * ROOM as usize);
    eprintln!(
        "thread mode at RLIMIT_NPROC: {} served, {} refused",
        c.served.len(),
        c.refused
    );
    assert!(c.refused > 0 && !c.served.is_empty(), "{c:?}");
    says_it_refuses(&server, "cannot start a thread");
    drop(other);
    drop(c);
    assert!(eventually(|| {
        let mut newcomer = server.connect();
        newcomer.send(b"newcomer\n");
        newcomer.read_line().is_ok_and(|l| l == b"NEWCOMER\n")
    }));
    let log = server.stop();
    assert!(log.contains("RLIMIT_NPROC"), "{log}");
}

/// Thread mode started under `ulimit -v 1048576` (`RLIMIT_AS` 1 GiB).
fn start_under_one_gib() -> TestServer {
    use std::os::unix::process::CommandExt;
    const ONE_GIB: libc::rlim_t = 1 << 30;
    let lim = libc::rlimit {
        rlim_cur: ONE_GIB,
        rlim_max: ONE_GIB,
    };
    let mut command = std::process::Command::new(SPEC.bin);
    command.args(SPEC.args).args(["--max-conns", "19000"]);
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls setrlimit, which is async-signal-safe, on a value it owns.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    TestServer::start_command(command)
}

/// Under a limit on address space (`ulimit -v 1048576`, no root needed)
/// threads of 256 KiB fit by the thousand, and glibc's malloc arenas, at
/// 64 MiB of address space each and eight per CPU by default, must not
/// take that room first: 50 clients at once are all served.
#[test]
fn thread_mode_serves_under_rlimit_as() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_under_one_gib();
    let c = crowd(&server, &SPEC, 50);
    assert_eq!((c.served.len(), c.refused), (50, 0), "{}", server.log());
}

/// At that limit the server serves up to its ceiling, read at start-up
/// from `RLIMIT_AS` and checked again before each thread, refuses the rest
/// with `ERR server full`, names the limit, and is alive afterwards: a
/// thread that could not map its stacks would have ended it.
#[test]
fn thread_mode_refuses_at_rlimit_as() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    raise_nofile_limit(8_000);
    let server = start_under_one_gib();
    assert!(
        server.logged(|l| ceiling_of(l).is_some()),
        "no ceiling below --max-conns:\n{}",
        server.log()
    );
    let log = server.log();
    let ceiling = ceiling_of(&log).expect("seen above");
    assert!(log.contains("RLIMIT_AS = 1024 MiB"), "{log}");
    assert!(ceiling >= 50, "ceiling {ceiling}");
    // 3000, or more where the ceiling is higher (fewer CPUs, fewer arenas).
    let n = 3_000.max(ceiling + 100);
    let (mut served, refused) = one_by_one(&server, n);
    eprintln!(
        "thread mode at RLIMIT_AS 1 GiB: ceiling {ceiling}, {} served, {refused} refused",
        served.len()
    );
    assert!(refused > 0 && served.len() <= ceiling, "ceiling {ceiling}");
    says_it_refuses(&server, "RLIMIT_AS");
    served.truncate(served.len().saturating_sub(10));
    assert!(eventually(|| {
        let mut newcomer = server.connect();
        newcomer.send(b"newcomer\n");
        newcomer.read_line().is_ok_and(|l| l == b"NEWCOMER\n")
    }));
}

/// At that limit every client the server takes may send the longest line
/// `--max-line` allows, all at once: the buffers such a line grows are in
/// the ceiling's budget, so no allocation fails (Rust would end the server
/// on one). Each served client sends 64 KiB with no newline; once the
/// server has read all of it, a newcomer is answered or refused, and each
/// client, ending its line, gets all of it back upper-cased.
#[test]
fn thread_mode_at_rlimit_as_holds_a_longest_line_on_every_connection() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    raise_nofile_limit(8_000);
    let mut server = start_under_one_gib();
    assert!(
        server.logged(|l| ceiling_of(l).is_some()),
        "no ceiling below --max-conns:\n{}",
        server.log()
    );
    let ceiling = ceiling_of(&server.log()).expect("seen above");
    let (mut served, refused) = one_by_one(&server, ceiling + 20);
    assert!(refused > 0 && served.len() <= ceiling, "ceiling {ceiling}");
    let line = vec![b'x'; 64 * 1024];
    for client in &mut served {
        client.send(&line);
    }
    let all_read = eventually(|| unread(&server, &served) == Some(0));
    assert!(
        all_read,
        "the server has not read every long line (exit: {:?}):\n{}",
        server.try_exit_status(),
        server.log()
    );
    let mut newcomer = server.connect();
    newcomer.send(b"newcomer\n");
    let answer = newcomer.read_line().expect("an answer");
    assert!(
        answer == b"NEWCOMER\n" || answer == ERR_SERVER_FULL.as_bytes(),
        "newcomer got {:?}\n{}",
        String::from_utf8_lossy(&answer),
        server.log()
    );
    for client in &mut served {
        client.send(b"\n");
    }
    let mut reply = line.to_ascii_uppercase();
    reply.push(b'\n');
    for (i, client) in served.iter_mut().enumerate() {
        let got = client
            .read_exact(reply.len())
            .unwrap_or_else(|e| panic!("client {i}: {e}\n{}", server.log()));
        assert!(got == reply, "client {i}: a wrong reply");
    }
    assert_eq!(server.try_exit_status(), None, "{}", server.log());
    eprintln!(
        "thread mode at RLIMIT_AS 1 GiB: ceiling {ceiling}, {} served a {}-byte line each",
        served.len(),
        line.len()
    );
}

/// Bytes the clients sent that the server has not read: those still in the
/// clients' send queues (`SIOCOUTQ`), and those in the server's receive
/// queues (`SIOCINQ`, read through copies of its sockets). `None` if the
/// server's sockets cannot be copied (it has ended, or the kernel cannot).
fn unread(server: &TestServer, clients: &[LineClient]) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let queued = |fd: i32, request| {
        let mut bytes: libc::c_int = 0;
        // SAFETY: both requests write one c_int to the pointer given,
        // `bytes`, a live local.
        let done = unsafe { libc::ioctl(fd, request, &raw mut bytes) };
        (done == 0).then_some(bytes as usize)
    };
    let mut unread = 0;
    for client in clients {
        unread += queued(client.stream().as_raw_fd(), libc::TIOCOUTQ)?;
    }
    for (_, socket) in testkit::proc::socket_copies(server.pid()).ok()? {
        // The listener has no queue of bytes: the request fails on it.
        unread += queued(socket.as_raw_fd(), libc::FIONREAD).unwrap_or(0);
    }
    Some(unread)
}

/// The ceiling line is what a user reads; it names the limit.
#[test]
fn the_ceiling_is_logged_at_start() {
    let mut command = std::process::Command::new(SPEC.bin);
    command.args(SPEC.args).env("RUST_LOG", "info");
    let server = TestServer::start_command(command);
    assert!(
        eventually(|| server.log().contains("thread ceiling: ")),
        "{}",
        server.log()
    );
}
