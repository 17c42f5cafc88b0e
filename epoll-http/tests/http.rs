//! Black-box tests of epoll-http, each run level- and edge-triggered.
#![cfg(target_os = "linux")]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use testkit::{TIMEOUT, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_epoll-http");
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

/// One HTTP response as read off the wire.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The headers every response must carry (TechEmpower's rules among them).
    fn assert_well_formed(&self) {
        assert_eq!(self.header("Server"), Some("epoll-http"));
        let date = self.header("Date").expect("Date header");
        httpdate::parse_http_date(date).expect("an HTTP date");
        assert_eq!(self.header("Content-Type"), Some("text/plain"));
        assert!(self.header("Content-Length").is_some());
    }
}

/// A raw HTTP/1.x client: bytes out, responses parsed strictly.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one response; `head_only` for a response to HEAD.
    fn response(&mut self, head_only: bool) -> Response {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) =
                parsed.parse(&self.buf).expect("valid response")
            {
                let status = parsed.code.unwrap();
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8(h.value.to_vec()).unwrap(),
                        )
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let length = if head_only { 0 } else { length };
                while self.buf.len() < len + length {
                    assert!(self.fill() > 0, "closed mid-body");
                }
                let body = self.buf[len..len + length].to_vec();
                self.buf.drain(..len + length);
                return Response {
                    status,
                    headers,
                    body,
                };
            }
            assert!(self.fill() > 0, "closed before a complete response");
        }
    }

    /// True if the server closed the connection (end of stream, or a reset
    /// because it closed with our bytes unread) with nothing more sent.
    fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => self.buf.is_empty(),
            Ok(_) => false,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
        }
    }
}

fn start(args: &[&str]) -> TestServer {
    TestServer::start(BIN, args)
}

fn get_and_head_with_a_real_client(mode: &[&str]) {
    let server = start(mode);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let url = format!("http://{}/anything", server.addr());

    let mut get = agent.get(&url).call().expect("GET");
    assert_eq!(get.status(), 200);
    let header = |r: &ureq::http::Response<ureq::Body>, n: &str| {
        r.headers().get(n).map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header(&get, "server").as_deref(), Some("epoll-http"));
    assert_eq!(header(&get, "content-type").as_deref(), Some("text/plain"));
    assert_eq!(header(&get, "content-length").as_deref(), Some("13"));
    httpdate::parse_http_date(&header(&get, "date").unwrap()).unwrap();
    assert_eq!(get.body_mut().read_to_string().unwrap(), "Hello, world!");

    let head = agent.head(&url).call().expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length").as_deref(), Some("13"));

    let mut post = agent.post(&url).send("some body").expect("POST");
    assert_eq!(post.status(), 405);
    assert_eq!(header(&post, "allow").as_deref(), Some("GET, HEAD"));
    assert_eq!(
        post.body_mut().read_to_string().unwrap(),
        "405 Method Not Allowed\n"
    );

    // The agent reused its connection throughout; one more to be sure.
    let mut again = agent.get(&url).call().expect("GET again");
    assert_eq!(again.body_mut().read_to_string().unwrap(), "Hello, world!");
}

fn keep_alive_serves_many_requests_on_one_connection(mode: &[&str]) {
    let server = start(mode);
    let mut c = Client::connect(server.addr());
    for _ in 0..5 {
        c.send(GET);
        let r = c.response(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Hello, world!");
        assert_eq!(r.header("Connection"), None);
        r.assert_well_formed();
    }
}

fn hundred_pipelined_requests_in_one_write(mode: &[&str]) {
    let server = start(mode);
    let mut c = Client::connect(server.addr());
    let mut batch = Vec::new();
    for i in 0..100 {
        let method = if i % 10 == 9 { "HEAD" } else { "GET" };
        batch.extend_from_slice(format!("{method} /{i} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
    }
    c.send(&batch);
    for i in 0..100 {
        let head = i % 10 == 9;
        let r = c.response(head);
        assert_eq!(r.status, 200, "response {i}");
        assert_eq!(
            r.body,
            if head { &b""[..] } else { b"Hello, world!" },
            "response {i}"
        );
    }
    assert!(c.buf.is_empty());
}

fn a_request_split_byte_by_byte(mode: &[&str]) {
    let server = start(mode);
    let mut c = Client::connect(server.addr());
    for &b in GET {
        c.send(&[b]);
    }
    let r = c.response(false);
    assert_eq!((r.status, &r.body[..]), (200, &b"Hello, world!"[..]));
}

fn malformed_requests_get_400_and_a_close(mode: &[&str]) {
    let server = start(mode);
    for bad in [
        &b"GET / FTP/1.1\r\nHost: test\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut c = Client::connect(server.addr());
        c.send(bad);
        let r = c.response(false);
        assert_eq!(r.status, 400, "{bad:?}");
        assert_eq!(r.header("Connection"), Some("close"));
        r.assert_well_formed();
        assert!(c.closed(), "{bad:?}: still open");
    }
}

fn an_oversized_head_gets_431_before_it_ends(mode: &[&str]) {
    let server = start(mode);
    let mut c = Client::connect(server.addr());
    let mut head = b"GET / HTTP/1.1\r\nHost: test\r\nX-Filler: ".to_vec();
    head.resize(9 * 1024, b'f');
    c.send(&head); // and never the blank line
    let r = c.response(false);
    assert_eq!(r.status, 431);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed());
}

fn bodies_are_skipped_or_refused(mode: &[&str]) {
    let server = start(mode);
    let mut c = Client::connect(server.addr());
    c.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\nhello");
    c.send(b" world");
    c.send(GET);
    assert_eq!(c.response(false).status, 405);
    assert_eq!(c.response(false).status, 200);

    let mut big = Client::connect(server.addr());
    big.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 2000000\r\n\r\n");
    assert_eq!(big.response(false).status, 413);
    assert!(big.closed());

    let mut chunked = Client::connect(server.addr());
    chunked.send(b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(chunked.response(false).status, 501);
    assert!(chunked.closed());
}

fn http_1_0_closes_unless_asked_to_keep_alive(mode: &[&str]) {
    let server = start(mode);
    let mut plain = Client::connect(server.addr());
    plain.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = plain.response(false);
    assert_eq!((r.status, r.header("Connection")), (200, Some("close")));
    assert!(plain.closed());

    let mut kept = Client::connect(server.addr());
    for _ in 0..3 {
        kept.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = kept.response(false);
        assert_eq!(
            (r.status, r.header("Connection")),
            (200, Some("keep-alive"))
        );
    }
}

fn connection_close_is_honoured(mode: &[&str]) {
    let server = start(mode);
    let mut c = Client::connect(server.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: test\r\n\r\n");
    let r = c.response(false);
    assert_eq!((r.status, r.header("Connection")), (200, Some("close")));
    assert!(c.closed(), "answered a request after Connection: close");
}

fn end_of_stream_mid_request_closes_at_once(mode: &[&str]) {
    let server = start(mode);
    let mut c = Client::connect(server.addr());
    c.send(GET);
    c.send(b"GET / HTTP/1.1\r\nHo");
    c.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(c.response(false).status, 200);
    assert!(c.closed());
}

fn two_hundred_keep_alive_clients_at_once(mode: &[&str]) {
    let server = start(mode);
    let addr = server.addr();
    thread::scope(|s| {
        for _ in 0..200 {
            s.spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..20 {
                    c.send(GET);
                    let r = c.response(false);
                    assert_eq!((r.status, &r.body[..]), (200, &b"Hello, world!"[..]));
                }
            });
        }
    });
}

fn a_slow_header_is_cut_off(mode: &[&str]) {
    let args: Vec<&str> = mode
        .iter()
        .copied()
        .chain(["--header-timeout", "0.5"])
        .collect();
    let server = start(&args);
    let mut slow = Client::connect(server.addr());
    let mut idle = Client::connect(server.addr());
    slow.send(b"GET / HTTP/1.1\r\n");
    let started = Instant::now();
    thread::sleep(Duration::from_millis(300));
    slow.send(b"Host: test\r\n"); // trickling does not buy more time
    assert!(
        slow.closed(),
        "a head unfinished after the timeout was not cut off"
    );
    assert!(
        idle.closed(),
        "a connection that never sent a request was not cut off"
    );
    // Closed by the once-a-second sweep after the 0.5 s deadline.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let mut prompt = Client::connect(server.addr());
    prompt.send(GET);
    assert_eq!(prompt.response(false).status, 200);
}

/// `--idle-timeout` shorter than `--header-timeout`: once a request is
/// answered, the connection is idle and its idle deadline applies, however
/// it was filed while its head was arriving. A whole head in one write, and
/// one in two parts, are both closed about a second after their response
/// (the wheel's one-second slots allow up to about two), not at the header
/// deadline ten seconds out.
fn an_idle_timeout_shorter_than_the_header_timeout(mode: &[&str]) {
    let args: Vec<&str> = mode
        .iter()
        .copied()
        .chain(["--idle-timeout", "1", "--header-timeout", "10"])
        .collect();
    let server = start(&args);
    let mut whole = Client::connect(server.addr());
    let mut parts = Client::connect(server.addr());
    whole.send(GET);
    parts.send(&GET[..10]);
    assert_eq!(whole.response(false).status, 200);
    let answered = Instant::now();
    parts.send(&GET[10..]);
    assert_eq!(parts.response(false).status, 200);
    for client in [&mut whole, &mut parts] {
        assert!(client.closed(), "an idle connection was not closed");
        assert!(
            answered.elapsed() < Duration::from_secs(3),
            "closed {:?} after its response, with --idle-timeout 1",
            answered.elapsed()
        );
    }
}

/// The server, frozen (SIGSTOP), gets two things in one batch when it
/// resumes: a newcomer's connection, then the reset of an idle client whose
/// `--idle-timeout` has passed, with the once-a-second idle sweep due.
/// However the sweep, the accept and the reset's `EPOLLHUP` meet, the
/// newcomer is served: no event meant for the expired connection reaches
/// the one that may take its slot.
///
/// A server frozen inside `epoll_wait` comes back from it with EINTR and
/// no events (signal(7): stop signals interrupt it), and would sweep before
/// the batch arrives; so a third client keeps it busy with pipelined
/// requests, and the freeze lands, almost always, while it is working.
/// The log shows the expired client closed and the newcomer connected.
fn a_stale_event_never_reaches_a_newcomer(mode: &[&str]) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let args: Vec<&str> = mode
        .iter()
        .copied()
        .chain(["--idle-timeout", "0.5"])
        .collect();
    let mut command = std::process::Command::new(BIN);
    command.args(&args).env("RUST_LOG", "debug,epoll_http=info");
    let server = TestServer::start_command(command);
    let pid = server.pid() as libc::pid_t;
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
    };
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        // Ends the busy client however the test ends, a failed assertion too.
        let _done = testkit::SetOnDrop(&done);
        // The busy client: requests written and responses read as fast as
        // they go, until the test is done.
        let busy = TcpStream::connect(server.addr()).unwrap();
        busy.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        busy.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut writer = busy.try_clone().unwrap();
        let mut reader = busy;
        let done = &done;
        s.spawn(move || {
            let batch = GET.repeat(200);
            while !done.load(Ordering::Relaxed) {
                let _ = writer.write_all(&batch);
            }
        });
        s.spawn(move || {
            let mut sink = [0u8; 64 * 1024];
            while !done.load(Ordering::Relaxed) {
                let _ = reader.read(&mut sink);
            }
        });

        let mut old = Client::connect(server.addr());
        old.send(GET);
        assert_eq!(old.response(false).status, 200);
        let old_peer = old.stream.local_addr().unwrap();
        // SAFETY: kill only sends a signal, to the server this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        assert!(testkit::eventually(|| state() == 'T'), "not stopped");
        // Past the idle timeout and the sweep's second.
        thread::sleep(Duration::from_millis(1200));
        let mut newcomer = Client::connect(server.addr());
        let new_peer = newcomer.stream.local_addr().unwrap();
        socket2::SockRef::from(&old.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(old);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
        newcomer.send(GET);
        assert_eq!(newcomer.response(false).status, 200);
        newcomer.send(GET);
        assert_eq!(newcomer.response(false).status, 200);
        assert!(
            server.logged_text(&format!("{old_peer} closed")),
            "{}",
            server.log()
        );
        assert!(
            server.logged_text(&format!("{new_peer} connected")),
            "{}",
            server.log()
        );
    });
}

/// Two clients pipeline requests without pause, reading their responses as
/// fast as they come; a third makes 50 requests meanwhile, and the
/// flooders stop only once it is done, so a loop that one client can hold
/// never answers it. Edge-triggered, the server reads a socket until it
/// would block, so it needs a per-turn budget: its debug log shows it.
fn a_pipelining_client_does_not_hold_the_loop(mode: &[&str]) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut command = std::process::Command::new(BIN);
    command.args(mode).env("RUST_LOG", "warn,epoll_http=debug");
    let server = TestServer::start_command(command);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let _stop = testkit::SetOnDrop(&stop);
        for _ in 0..2 {
            let flooder = TcpStream::connect(server.addr()).unwrap();
            flooder
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            flooder
                .set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut writer = flooder.try_clone().unwrap();
            let mut reader = flooder;
            let stop = &stop;
            s.spawn(move || {
                let batch = GET.repeat(64 * 1024 / GET.len());
                while !stop.load(Ordering::Relaxed) {
                    let _ = writer.write_all(&batch);
                }
            });
            s.spawn(move || {
                let mut sink = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let _ = reader.read(&mut sink);
                }
            });
        }
        let mut third = Client::connect(server.addr());
        for _ in 0..50 {
            third.send(GET);
            assert_eq!(third.response(false).status, 200);
        }
        // Looked for while the flood goes on: the budget is spent only once
        // a flooder has 16 reads' worth waiting, which a loaded machine may
        // not give it before the third client is done.
        if mode.contains(&"--edge") {
            assert!(
                server.logged_text("cut short so far"),
                "no per-turn budget in the log:\n{}",
                server.log()
            );
        }
    });
}

/// An idle keep-alive connection holds no buffer, however it was used: 200
/// clients each send half a request, then its end with 60 KiB of pipelined
/// requests behind it (a read that lands on a request already under way),
/// then a smaller batch, read every response, and go idle. The server's
/// memory grows by less than 1 KiB apiece, plus a fixed margin.
fn an_idle_connection_holds_no_buffer_after_heavy_use(mode: &[&str]) {
    use testkit::proc;
    const CLIENTS: usize = 200;
    let server = start(mode);
    let heavy = |c: &mut Client| {
        c.send(b"GET / HTTP/1.1\r\nHo");
        let mut burst = b"st: test\r\n\r\n".to_vec();
        let many = GET.len();
        burst.extend(GET.repeat(60 * 1024 / many));
        c.send(&burst);
        for _ in 0..=60 * 1024 / many {
            assert_eq!(c.response(false).status, 200);
        }
        c.send(&GET.repeat(100));
        for _ in 0..100 {
            assert_eq!(c.response(false).status, 200);
        }
    };
    // Warm-up: what the loop keeps for everyone is in the baseline.
    let mut warm = Client::connect(server.addr());
    heavy(&mut warm);
    drop(warm);
    let before = proc::rss_kib(server.pid());
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| Client::connect(server.addr()))
        .collect();
    for c in &mut clients {
        heavy(c);
    }
    let grown = proc::rss_kib(server.pid()).saturating_sub(before);
    eprintln!("{mode:?}: {CLIENTS} idle connections after heavy use: RSS grew {grown} KiB");
    assert!(
        grown < CLIENTS as u64 + 2048,
        "RSS grew {grown} KiB for {CLIENTS} idle connections"
    );
    drop(clients);
}

fn refuses_past_max_conns(mode: &[&str]) {
    let args: Vec<&str> = mode.iter().copied().chain(["--max-conns", "3"]).collect();
    let server = start(&args);
    let mut kept: Vec<Client> = (0..3).map(|_| Client::connect(server.addr())).collect();
    for c in &mut kept {
        c.send(GET);
        assert_eq!(c.response(false).status, 200);
    }
    let mut extra = Client::connect(server.addr());
    assert_eq!(extra.response(false).status, 503);
    assert!(extra.closed());
    testkit::suite::says_it_refuses(&server, "3 connections (--max-conns)");
}

/// Started with a soft descriptor limit of 256 under a hard one of 1024,
/// the server raises it, warns that `--max-conns 5000` is more than it can
/// hold, serves 1008 clients (1024 less 16 for itself) and answers 503 to
/// the rest, as the echo servers do (`testkit::suite::descriptor_limit_raised`).
fn descriptor_limit_raised(mode: &[&str]) {
    const ROOM: usize = 1024 - 16;
    let mut command = std::process::Command::new(BIN);
    command.args(mode).args(["--max-conns", "5000"]);
    testkit::limit_descriptors(&mut command, 256, 1024);
    command.env("RUST_LOG", "info");
    let server = TestServer::start_command(command);
    let raised = format!("descriptor limit 1024 (raised from 256): room for {ROOM} connections");
    assert!(server.logged_text(&raised), "{}", server.log());
    assert!(
        server.logged_text(&format!(
            "--max-conns 5000 is more than the descriptor limit allows: holding at most {ROOM}"
        )),
        "{}",
        server.log()
    );
    testkit::raise_nofile_limit(2 * 1024 + 100);
    let mut kept: Vec<Client> = (0..ROOM).map(|_| Client::connect(server.addr())).collect();
    let mut extra: Vec<Client> = (0..5).map(|_| Client::connect(server.addr())).collect();
    for c in &mut kept {
        c.send(GET);
        assert_eq!(c.response(false).status, 200);
    }
    for c in &mut extra {
        assert_eq!(c.response(false).status, 503);
    }
    testkit::suite::says_it_refuses(&server, &format!("{ROOM} connections (RLIMIT_NOFILE 1024)"));
}

#[cfg(target_os = "linux")]
fn idle_connections_cost_no_cpu(mode: &[&str]) {
    use testkit::proc;
    let server = start(mode);
    let clients: Vec<Client> = (0..10).map(|_| Client::connect(server.addr())).collect();
    let before = proc::total_cpu(server.pid());
    thread::sleep(Duration::from_secs(2));
    let used = proc::total_cpu(server.pid()) - before;
    drop(clients);
    assert!(used < Duration::from_millis(200), "{used:?} of CPU in 2 s");
}

/// Out of descriptors: with RLIMIT_NOFILE at 64 the server fills its table,
/// accepts fail with EMFILE, the level-triggered listener stays readable, and
/// the server must neither spin nor die; once clients leave it serves again.
fn survives_descriptor_exhaustion(mode: &[&str]) {
    use testkit::{eventually, lower_descriptor_limit, proc};
    const LIMIT: u64 = 64;
    let server = start(mode);
    lower_descriptor_limit(server.pid(), LIMIT);
    let room = LIMIT as usize - proc::fds_below(server.pid(), LIMIT);
    let mut clients: Vec<Client> = (0..room + 10)
        .map(|_| {
            let mut c = Client::connect(server.addr());
            c.send(GET);
            c
        })
        .collect();
    assert!(eventually(
        || proc::fds_below(server.pid(), LIMIT) == LIMIT as usize
    ));
    let before = proc::total_cpu(server.pid());
    let mut more = Vec::new();
    for _ in 0..20 {
        more.push(Client::connect(server.addr()));
        thread::sleep(Duration::from_millis(100));
    }
    let used = proc::total_cpu(server.pid()) - before;
    eprintln!("epoll-http {mode:?}: CPU while out of descriptors for 2 s: {used:?}");
    assert!(used < Duration::from_millis(500), "{used:?} of CPU in 2 s");
    drop(more);
    let keep = clients.split_off(room - 20);
    drop(clients);
    for mut c in keep {
        assert_eq!(c.response(false).status, 200);
    }
    let mut newcomer = Client::connect(server.addr());
    newcomer.send(GET);
    assert_eq!(newcomer.response(false).status, 200);
}

/// 10 000 connections ending every way a client can end one leave the
/// descriptor count at its baseline and memory within a few MiB.
fn churn_leaves_no_trace(mode: &[&str]) {
    use testkit::{eventually, proc};
    let server = start(mode);
    let fds = proc::fd_count(server.pid());
    let mut warm = Client::connect(server.addr());
    warm.send(GET);
    assert_eq!(warm.response(false).status, 200);
    drop(warm);
    assert!(eventually(|| proc::fd_count(server.pid()) == fds));
    let rss = proc::rss_kib(server.pid());
    for i in 0..10_000 {
        let mut c = Client::connect(server.addr());
        match i % 4 {
            0 => {
                c.send(GET);
                assert_eq!(c.response(false).status, 200);
            }
            1 => {
                c.send(b"GET / HTTP/1.1\r\nHo");
                socket2::SockRef::from(&c.stream)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            2 => {
                c.send(GET);
                c.stream.shutdown(Shutdown::Write).unwrap();
                assert_eq!(c.response(false).status, 200);
                assert!(c.closed());
            }
            _ => c.send(b"GET / HTTP/1.1\r\nHost: aban"),
        }
    }
    assert!(
        eventually(|| proc::fd_count(server.pid()) == fds),
        "descriptors: {fds} before, {} after",
        proc::fd_count(server.pid())
    );
    let grown = proc::rss_kib(server.pid()).saturating_sub(rss);
    eprintln!("epoll-http {mode:?}: RSS grew {grown} KiB over 10 000 connections");
    assert!(grown < 4 * 1024, "RSS grew by {grown} KiB");
}

/// A client that pipelines requests and never reads the responses: the
/// server stops reading from it while responses are owed, so its memory
/// stays bounded, and it still answers others.
fn a_client_that_never_reads(mode: &[&str]) {
    use testkit::proc;
    let server = start(mode);
    let mut other = Client::connect(server.addr());
    other.send(GET);
    assert_eq!(other.response(false).status, 200);
    let rss = proc::rss_kib(server.pid());

    let mut flooder = testkit::flooder(server.addr());
    let written = testkit::flood(&mut flooder, &GET.repeat(512), 64 << 20);
    let grown = proc::rss_kib(server.pid()).saturating_sub(rss);
    assert!(
        grown < 8 * 1024,
        "RSS grew {grown} KiB while a client wrote {written} bytes and read none"
    );
    assert!(written < 64 << 20, "the server read all {written} bytes");
    other.send(GET);
    assert_eq!(other.response(false).status, 200);
}

/// A broken listener ends the server with one `error:` line and exit 1,
/// after it has answered a request.
fn a_broken_listener_ends_the_server(mode: &[&str]) {
    let server = start(mode);
    let mut client = Client::connect(server.addr());
    client.send(GET);
    assert_eq!(client.response(false).status, 200);
    testkit::cli::a_broken_listener_ends(server);
}

/// One `#[test]` per check per mode.
macro_rules! in_both_modes {
    ($($check:ident),* $(,)?) => {
        mod level_triggered {
            $(#[test] fn $check() { super::$check(&[]); })*
        }
        mod edge_triggered {
            $(#[test] fn $check() { super::$check(&["--edge"]); })*
        }
        mod level_triggered_corked {
            $(#[test] fn $check() { super::$check(&["--cork", "--nodelay"]); })*
        }
    };
}

in_both_modes!(
    get_and_head_with_a_real_client,
    keep_alive_serves_many_requests_on_one_connection,
    hundred_pipelined_requests_in_one_write,
    a_request_split_byte_by_byte,
    malformed_requests_get_400_and_a_close,
    an_oversized_head_gets_431_before_it_ends,
    bodies_are_skipped_or_refused,
    http_1_0_closes_unless_asked_to_keep_alive,
    connection_close_is_honoured,
    end_of_stream_mid_request_closes_at_once,
    two_hundred_keep_alive_clients_at_once,
    a_slow_header_is_cut_off,
    an_idle_timeout_shorter_than_the_header_timeout,
    a_stale_event_never_reaches_a_newcomer,
    a_pipelining_client_does_not_hold_the_loop,
    an_idle_connection_holds_no_buffer_after_heavy_use,
    refuses_past_max_conns,
    descriptor_limit_raised,
    idle_connections_cost_no_cpu,
    survives_descriptor_exhaustion,
    churn_leaves_no_trace,
    a_client_that_never_reads,
    a_broken_listener_ends_the_server,
);

/// `--help` is user documentation, and says what this server does past
/// `--max-conns`: it answers 503, not the echo servers' `ERR server full`.
#[test]
fn help_is_user_documentation() {
    let help = testkit::check_help(env!("CARGO_BIN_EXE_epoll-http"));
    assert!(help.contains("503"), "{help}");
    assert!(!help.contains("ERR server full"), "{help}");
    assert!(
        help.starts_with("HTTP \"Hello, world!\" server on epoll"),
        "{help}"
    );
}

/// Flags and values that cannot apply are refused, each with its reason:
/// the echo servers' `--max-line`, and a timeout of 0, which would close
/// every connection before its first response.
#[test]
fn flags_that_cannot_apply_are_refused() {
    use testkit::cli::refused;
    refused(BIN, &["--max-line", "100"], "epoll-http has no --max-line");
    let timeout = "must be a number of seconds, more than 0 and at most 86400";
    for flag in ["--header-timeout", "--idle-timeout"] {
        for bad in ["0", "-1", "0.0", "NaN", "inf", "1e9", "soon"] {
            refused(BIN, &[flag, bad], timeout);
        }
    }
    refused(
        BIN,
        &["--max-conns", "0"],
        "must be a whole number, at least 1",
    );
    refused(
        BIN,
        &["--backlog", "0"],
        "must be a whole number, from 1 to 2147483647",
    );
}

/// One `error:` line on a port in use; a host name for `--addr`; the end
/// by SIGTERM; connections logged at `info`, opened and closed, as every
/// server does.
#[test]
fn start_up_log_and_end_from_outside() {
    testkit::cli::port_in_use_is_one_error_line(BIN, &[]);
    let server = testkit::cli::listens_on_a_host_name(BIN, &[]);
    let mut client = Client::connect(server.addr());
    client.send(GET);
    assert_eq!(client.response(false).status, 200);
    drop(server);

    let mut command = std::process::Command::new(BIN);
    command.env("RUST_LOG", "info");
    let server = TestServer::start_command(command);
    let mut client = Client::connect(server.addr());
    let peer = client.stream.local_addr().unwrap();
    client.send(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    assert_eq!(client.response(false).status, 200);
    assert!(client.closed());
    let said = |what: &str| {
        server.logged(|l| l.contains(" INFO ") && l.contains(&format!("{peer} {what}")))
    };
    assert!(said("connected") && said("closed"), "{}", server.log());
    testkit::cli::ends_by_sigterm(server);
}
