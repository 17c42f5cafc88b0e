//! The io-models test harness: every crate's black-box tests start the real
//! server binary on a free loopback port and talk to it over real sockets
//! with these.
//!
//! - [`TestServer`]: start a binary, wait for its ready line, kill it on drop;
//! - [`LineClient`]: a blocking line client whose every read is bounded;
//! - [`flooder`] and [`flood`]: a client that writes and never reads;
//! - [`proc`]: RSS, CPU, descriptors and threads of a process tree (Linux);
//! - [`limit_descriptors`], [`lower_descriptor_limit`], [`raise_nofile_limit`]:
//!   descriptor limits;
//! - [`cli`]: the command line seen from outside: refused flags, one
//!   error line, host names, the end by SIGTERM or by a broken listener;
//! - [`suite`]: the echo protocol's conformance checks, turned into
//!   `#[test]` functions by [`echo_suite!`];
//! - [`thread_echo_server`]: a reference echo server on a thread of the
//!   test, for testing clients.
//!
//! Every wait is bounded: a server that hangs fails the test instead of
//! hanging CI.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use socket2::SockRef;

pub mod cli;
pub mod scale;
pub mod suite;

/// How long a test waits for any one thing before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A server binary running on a free loopback port, ended when dropped
/// (SIGTERM, then SIGKILL after a second).
///
/// Its stderr (the log) is collected rather than shown: a passing test
/// prints nothing of it, so the warnings a server is *meant* to log under a
/// test's abuse (`accept failed: Too many open files`) do not read as
/// trouble. A failing test shows it: the log is printed when the server is
/// dropped while the test panics. [`log`](Self::log) reads it meanwhile.
#[derive(Debug)]
pub struct TestServer {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    log_reader: Option<thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts `bin` with `args` plus `--addr 127.0.0.1:0` and waits for its
    /// `listening on` line. It logs at `warn` unless `RUST_LOG` is set.
    pub fn start(bin: &str, args: &[&str]) -> TestServer {
        let mut command = Command::new(bin);
        command.args(args);
        Self::start_command(command)
    }

    /// Like [`start`](Self::start), for a command the caller has prepared
    /// (extra environment, a lowered descriptor limit).
    /// Adds `--addr 127.0.0.1:0` unless the command names an address.
    pub fn start_command(mut command: Command) -> TestServer {
        if !command.get_args().any(|a| a == "--addr") {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Warnings only, unless the test's environment or the command asks
        // for more (a test that reads an `info` line from the log).
        let asked = command.get_envs().any(|(k, _)| k == "RUST_LOG");
        if std::env::var_os("RUST_LOG").is_none() && !asked {
            command.env("RUST_LOG", "warn");
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let log_reader = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(line) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep reading so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut server = TestServer {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
            log_reader: Some(log_reader),
        };
        let line = match rx.recv_timeout(TIMEOUT) {
            Ok(Ok(line)) => line,
            other => panic!("{command:?} printed no ready line: {other:?}"),
        };
        server.addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        server
    }

    /// The address the server is listening on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id, for `/proc` readings.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new line client connected to the server.
    pub fn connect(&self) -> LineClient {
        LineClient::connect(self.addr)
    }

    /// The exit status if the server has exited, without waiting.
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Everything the server has written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits, at most [`TIMEOUT`], for a line of the log that `wanted`
    /// accepts, and says whether one came. The log arrives through its own
    /// pipe and reader thread, so a line the server wrote before it did
    /// something the test saw (its ready line, a reply) may not be in
    /// [`log`](Self::log) yet: a test that looks for a line waits for that
    /// line, never for an earlier one and then reads the log once.
    pub fn logged(&self, mut wanted: impl FnMut(&str) -> bool) -> bool {
        eventually(|| self.log().lines().any(&mut wanted))
    }

    /// [`logged`](Self::logged) for a line containing `text`.
    pub fn logged_text(&self, text: &str) -> bool {
        self.logged(|line| line.contains(text))
    }

    /// Stops the server (SIGTERM, then SIGKILL) and returns its whole log.
    pub fn stop(mut self) -> String {
        self.end();
        self.wait_for_log_end(TIMEOUT);
        self.log()
    }

    /// Waits, at most `limit`, until the log pipe closes. It closes when the
    /// server, and any child it forked that still holds its stderr, is gone.
    fn wait_for_log_end(&mut self, limit: Duration) {
        if let Some(reader) = self.log_reader.take() {
            let deadline = Instant::now() + limit;
            while !reader.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl TestServer {
    /// Ends the server: SIGTERM first, so that a server with children of
    /// its own (a process per connection) can end them too, then SIGKILL
    /// if it has not exited within a second.
    fn end(&mut self) {
        #[cfg(unix)]
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill takes no pointers; the caller's part is the pid:
            // the process this handle started and has not yet waited for,
            // so the pid is not reused.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(1);
            while Instant::now() < deadline {
                if self.child.try_wait().ok().flatten().is_some() {
                    return;
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.end();
        if thread::panicking() {
            // A failing test: show the server's log beside the failure.
            self.wait_for_log_end(Duration::from_secs(1));
            let log = self.log();
            if !log.is_empty() {
                eprintln!("----- server log ({}) -----\n{log}-----", self.addr);
            }
        }
    }
}

/// A blocking TCP client for line protocols, every read and write bounded by
/// [`TIMEOUT`].
#[derive(Debug)]
pub struct LineClient {
    reader: BufReader<TcpStream>,
}

impl LineClient {
    /// Connects to `addr`, panicking if that fails within [`TIMEOUT`].
    pub fn connect(addr: SocketAddr) -> LineClient {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        Self::from_stream(stream)
    }

    /// Wraps a stream that is already connected.
    pub fn from_stream(stream: TcpStream) -> LineClient {
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(TIMEOUT)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        LineClient {
            reader: BufReader::new(stream),
        }
    }

    /// The socket, for options and shutdowns.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send failed: {e}"));
    }

    /// Reads one line, `\n` included. An empty result means end of stream.
    pub fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        Ok(line)
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// Sends `line` plus `\n` and returns the reply line, `\n` included.
    pub fn request(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        let reply = self
            .read_line()
            .unwrap_or_else(|e| panic!("no reply to {line:?}: {e}"));
        String::from_utf8(reply).expect("reply is UTF-8")
    }

    /// Reads until the server closes, returning everything it sent.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut all = Vec::new();
        self.reader.read_to_end(&mut all)?;
        Ok(all)
    }

    /// Reads until the server closes or the connection fails, returning
    /// every byte that arrived, and the error, if it ended in one (a reset
    /// after the last reply is not a lost reply).
    pub fn read_until_closed(&mut self) -> (Vec<u8>, Option<io::Error>) {
        let mut all = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.reader.read(&mut chunk) {
                Ok(0) => return (all, None),
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (all, Some(e)),
            }
        }
    }

    /// True if nothing arrives within `wait` (the read times out). For
    /// asserting that a server is *not* answering, e.g. a serial server busy
    /// with another client.
    pub fn is_silent_for(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut byte = [0u8; 1];
        let silent = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break true;
            }
            self.stream().set_read_timeout(Some(left)).expect("timeout");
            match self.reader.read(&mut byte) {
                // A signal cut the wait short: wait out the rest.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    break matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    );
                }
                Ok(_) => break false,
            }
        };
        self.stream()
            .set_read_timeout(Some(TIMEOUT))
            .expect("timeout");
        silent
    }

    /// Shuts down the sending side: the server sees end of stream.
    pub fn shutdown_write(&self) {
        self.stream().shutdown(Shutdown::Write).expect("shutdown");
    }

    /// Closes with a reset (`SO_LINGER` 0) instead of a graceful close.
    pub fn reset(self) {
        SockRef::from(self.stream())
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(self);
    }
}

/// A client socket with small buffers of its own (16 KiB to receive, 64 KiB
/// to send) and a 2 s write timeout: what a server cannot hand over to it
/// piles up in the server, where a test can see it, not in the test.
pub fn flooder(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_recv_buffer_size(16 << 10).expect("SO_RCVBUF");
    socket.set_send_buffer_size(64 << 10).expect("SO_SNDBUF");
    socket
        .connect_timeout(&addr.into(), TIMEOUT)
        .expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    stream
}

/// Writes `chunk` again and again, up to `limit` bytes, until a write stalls
/// for the write timeout; returns how many bytes were written.
pub fn flood(stream: &mut TcpStream, chunk: &[u8], limit: usize) -> usize {
    let mut written = 0;
    while written < limit {
        let mut rest = chunk;
        while !rest.is_empty() {
            match stream.write(rest) {
                Ok(n) => {
                    written += n;
                    rest = &rest[n..];
                }
                // A signal cut the write short: nothing was written, try
                // again. (With SO_SNDTIMEO set, the kernel does not restart
                // a socket call a signal interrupts, whatever SA_RESTART says.)
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return written;
                }
                Err(e) => panic!("flood write failed: {e}"),
            }
        }
    }
    written
}

/// Sets a flag when dropped: a test's helper threads watch it, and stop
/// however the test ends, a failed assertion included (scoped threads are
/// joined before a panic leaves the scope, so a flag set only at the end
/// would leave them, and the test, running for ever).
pub struct SetOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Polls `condition` every 10 ms until it holds or [`TIMEOUT`] passes;
/// returns whether it held. For state the test can only observe from
/// outside, such as a descriptor count in `/proc`.
pub fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// Raises this process's soft `RLIMIT_NOFILE` towards `want` (up to the hard
/// limit) and returns the soft limit now in force. Servers started afterwards
/// inherit it.
#[cfg(unix)]
pub fn raise_nofile_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit needs a pointer to a writable rlimit: `lim`, a live local.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(got, 0, "getrlimit: {}", io::Error::last_os_error());
    let want = to_rlim(want);
    if lim.rlim_cur < want {
        lim.rlim_cur = want.min(lim.rlim_max);
        // SAFETY: setrlimit needs a pointer to a valid rlimit: `lim`, a live local.
        let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        assert_eq!(set, 0, "setrlimit: {}", io::Error::last_os_error());
    }
    from_rlim(lim.rlim_cur)
}

// `rlim_t` is u64 on Linux and macOS but i64 on FreeBSD, so the casts are
// needed there and no-ops here. The limits the tests set are small, and the
// largest value (RLIM_INFINITY) fits a u64 either way.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
fn to_rlim(v: u64) -> libc::rlim_t {
    v.min(i64::MAX as u64) as libc::rlim_t
}

#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
fn from_rlim(v: libc::rlim_t) -> u64 {
    v as u64
}

/// Makes `command` start with a soft descriptor limit (`RLIMIT_NOFILE`) of
/// `soft` and a hard one of `hard`, as a desktop session starts programs
/// (1024 and far more): a server should raise the first to the second.
#[cfg(unix)]
pub fn limit_descriptors(command: &mut Command, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    let lim = libc::rlimit {
        rlim_cur: to_rlim(soft),
        rlim_max: to_rlim(hard),
    };
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls setrlimit, which is async-signal-safe, on a value it owns.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Lowers a running process's descriptor limit, soft and hard, to `limit`
/// (`prlimit --nofile`), so a test can run a server out of descriptors
/// after it has sized itself: its `--max-conns` then sits above what the
/// kernel lets it open, and `accept` fails with EMFILE.
#[cfg(target_os = "linux")]
pub fn lower_descriptor_limit(pid: u32, limit: u64) {
    let lim = libc::rlimit {
        rlim_cur: to_rlim(limit),
        rlim_max: to_rlim(limit),
    };
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: `lim` is a live rlimit for the call's duration; a null old
    // limit asks for nothing back.
    let got = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    assert_eq!(got, 0, "prlimit: {}", io::Error::last_os_error());
}

/// Makes `command` start with a limit of `limit` queued signals
/// (`RLIMIT_SIGPENDING`), so a test can overflow a signal-driven server's
/// real-time signal queue. The limit counts every pending signal of the
/// user, system-wide.
#[cfg(target_os = "linux")]
pub fn limit_pending_signals(command: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    let lim = libc::rlimit {
        rlim_cur: to_rlim(limit),
        rlim_max: to_rlim(limit),
    };
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls setrlimit, which is async-signal-safe, on a value it owns.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_SIGPENDING, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts `bin` with `args` as user `nobody` (65534), with a process limit
/// (`RLIMIT_NPROC`) that leaves it room for `room` more tasks (processes or
/// threads), so that a test can run a server out of processes or threads.
///
/// Returns `None`, starting nothing, unless this process runs as root: the
/// kernel does not hold root to the limit, so only another user feels it,
/// and only root can become one. The caller says so in its output; the
/// other half of such a test (`--max-conns`) runs for everyone.
///
/// `nobody` must be able to execute the binary, and a clone in a private
/// directory (root's home, `mktemp -d`: mode 0700) is out of its reach. So
/// the binary is copied first into a directory of its own, mode 0755, under
/// the first temporary directory every user can enter, and run from there;
/// the copy is removed once the server has started (a running program's
/// file may be unlinked).
#[cfg(target_os = "linux")]
pub fn start_as_nobody(bin: &str, args: &[&str], room: u64) -> Option<TestServer> {
    use std::os::unix::process::CommandExt;
    const NOBODY: libc::uid_t = 65534;
    // SAFETY: geteuid has no preconditions: it takes no pointers.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // The limit counts every task (thread) of the user, system-wide: those
    // nobody runs already, the server itself, and `room` more.
    let others: u64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<libc::uid_t>().ok())
                == Some(NOBODY)
        })
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum();
    let lim = libc::rlimit {
        rlim_cur: to_rlim(others + 1 + room),
        rlim_max: to_rlim(others + 1 + room),
    };
    let copy = ReachableCopy::of(bin);
    let mut command = Command::new(&copy.path);
    command.args(args).current_dir(&copy.dir);
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls setrlimit, setgid and setuid, which are async-signal-safe, on
    // values it owns.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NPROC, &lim) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let server = TestServer::start_command(command);
    drop(copy);
    Some(server)
}

/// A copy of a binary in a directory every user can enter and read,
/// removed when dropped.
#[cfg(target_os = "linux")]
struct ReachableCopy {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

#[cfg(target_os = "linux")]
impl ReachableCopy {
    fn of(bin: &str) -> ReachableCopy {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COPIES: AtomicUsize = AtomicUsize::new(0);
        // Every directory on the way must let others through (o+x).
        let open_to_all = |dir: &Path| {
            dir.ancestors().all(|d| {
                std::fs::metadata(d)
                    .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
            })
        };
        let base = [
            std::env::temp_dir(),
            PathBuf::from("/tmp"),
            PathBuf::from("/dev/shm"),
        ]
        .into_iter()
        .find(|d| open_to_all(d))
        .unwrap_or_else(|| {
            panic!("no temporary directory that user nobody can enter, for a copy of {bin}")
        });
        let name = Path::new(bin)
            .file_name()
            .expect("a binary has a file name");
        let dir = base.join(format!(
            "io-models-{}-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            COPIES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        let path = dir.join(name);
        std::fs::copy(bin, &path)
            .unwrap_or_else(|e| panic!("cannot copy {bin} to {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the copy");
        ReachableCopy { dir, path }
    }
}

#[cfg(target_os = "linux")]
impl Drop for ReachableCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Readings of a process from `/proc` (Linux).
#[cfg(target_os = "linux")]
pub mod proc {
    use std::fs;
    use std::time::Duration;

    /// Resident memory in KiB (`VmRSS`).
    pub fn rss_kib(pid: u32) -> u64 {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// CPU time used so far, user and system.
    pub fn cpu_time(pid: u32) -> (Duration, Duration) {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
        // Fields after the command name, which is in parentheses and may
        // hold spaces: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields[i - 3].parse::<u64>().expect("tick count");
        // SAFETY: sysconf has no preconditions: it takes no pointers.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let to_time = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
        (to_time(ticks(14)), to_time(ticks(15)))
    }

    /// User plus system CPU time.
    pub fn total_cpu(pid: u32) -> Duration {
        let (user, system) = cpu_time(pid);
        user + system
    }

    /// Open descriptors.
    pub fn fd_count(pid: u32) -> usize {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("read fd dir")
            .count()
    }

    /// Open descriptors numbered below `n`: the slots a limit of `n`
    /// (`RLIMIT_NOFILE`, or select's FD_SETSIZE) leaves no longer free. A
    /// descriptor inherited with a higher number takes none of them.
    pub fn fds_below(pid: u32, n: u64) -> usize {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("read fd dir")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .filter(|&fd| fd < n)
            .count()
    }

    /// Threads.
    pub fn thread_count(pid: u32) -> usize {
        fs::read_dir(format!("/proc/{pid}/task"))
            .expect("read task dir")
            .count()
    }

    /// The processes `pid` has started and not yet reaped (none if it is
    /// gone). Children are listed per thread: every thread's are read.
    pub fn children(pid: u32) -> Vec<u32> {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            return Vec::new();
        };
        tasks
            .flatten()
            .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|list| {
                list.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// `pid` and every process below it (children, their children, …),
    /// `pid` first. A process that ends while the tree is walked is left out.
    pub fn tree(pid: u32) -> Vec<u32> {
        let mut all = vec![pid];
        let mut next = 0;
        while next < all.len() {
            all.extend(children(all[next]));
            next += 1;
        }
        all
    }

    /// Resident memory of the whole tree in KiB: the sum of each process's
    /// `VmRSS`. Pages a forked child still shares with its parent count in
    /// both, so this overstates a forking server's memory; it is the bound
    /// the tests hold it to.
    pub fn tree_rss_kib(pid: u32) -> u64 {
        tree(pid).into_iter().filter_map(try_rss_kib).sum()
    }

    /// Proportional memory of the whole tree in KiB: the sum of each
    /// process's `Pss` (`/proc/PID/smaps_rollup`), where a page shared by
    /// n processes counts 1/n in each. What a forking server really costs.
    pub fn tree_pss_kib(pid: u32) -> u64 {
        tree(pid)
            .into_iter()
            .filter_map(|p| {
                let text = fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok()?;
                kib_field(&text, "Pss:")
            })
            .sum()
    }

    /// Open descriptors of the whole tree.
    pub fn tree_fd_count(pid: u32) -> usize {
        tree(pid)
            .into_iter()
            .filter_map(|p| Some(fs::read_dir(format!("/proc/{p}/fd")).ok()?.count()))
            .sum()
    }

    /// CPU time of the whole tree, user and system: `pid`'s own, that of
    /// the children it has already waited for (which the kernel adds to
    /// `pid`'s `cutime` and `cstime`), and that of every live descendant.
    pub fn tree_cpu_time(pid: u32) -> (Duration, Duration) {
        let (mut user, mut system) = (Duration::ZERO, Duration::ZERO);
        for (i, p) in tree(pid).into_iter().enumerate() {
            if let Some(t) = try_cpu_times(p) {
                user += t.user;
                system += t.system;
                if i == 0 {
                    user += t.children_user;
                    system += t.children_system;
                }
            }
        }
        (user, system)
    }

    /// [`tree_cpu_time`], user plus system.
    pub fn tree_cpu(pid: u32) -> Duration {
        let (user, system) = tree_cpu_time(pid);
        user + system
    }

    /// Processes in state Z (exited, not yet waited for) among `pid`'s
    /// children.
    pub fn zombie_children(pid: u32) -> usize {
        tree(pid)
            .into_iter()
            .skip(1)
            .filter(|&p| {
                fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                    stat.rfind(')')
                        .and_then(|i| stat[i + 1..].split_whitespace().next())
                        == Some("Z")
                })
            })
            .count()
    }

    fn try_rss_kib(pid: u32) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        kib_field(&status, "VmRSS:")
    }

    fn kib_field(text: &str, name: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    struct CpuTimes {
        user: Duration,
        system: Duration,
        /// Children already waited for.
        children_user: Duration,
        children_system: Duration,
    }

    fn try_cpu_times(pid: u32) -> Option<CpuTimes> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses and may
        // hold spaces: state is field 3, utime 14, stime 15, cutime 16,
        // cstime 17.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i - 3)?.parse::<u64>().ok();
        // SAFETY: sysconf has no preconditions: it takes no pointers.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let to_time = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
        Some(CpuTimes {
            user: to_time(ticks(14)?),
            system: to_time(ticks(15)?),
            children_user: to_time(ticks(16)?),
            children_system: to_time(ticks(17)?),
        })
    }

    /// The largest of the kernel's TCP receive and send buffer limits
    /// (`tcp_rmem` and `tcp_wmem` maxima) added up: how much one direction
    /// of a connection can hold in kernel buffers.
    pub fn tcp_buffer_max() -> u64 {
        tcp_limit_max("/proc/sys/net/ipv4/tcp_rmem") + tcp_send_buffer_max()
    }

    /// The largest a socket's send buffer grows to (the `tcp_wmem`
    /// maximum): a server's socket takes at most this much output that its
    /// client has not read.
    pub fn tcp_send_buffer_max() -> u64 {
        tcp_limit_max("/proc/sys/net/ipv4/tcp_wmem")
    }

    fn tcp_limit_max(path: &str) -> u64 {
        fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
            .unwrap_or(6 << 20)
    }

    /// Copies of every socket descriptor `pid` holds, each with its number
    /// there, taken with `pidfd_getfd` (Linux 5.6; allowed to an ancestor
    /// of the process, as a test is of the server it started). A
    /// descriptor closed while they are taken is left out. The error is
    /// `ENOSYS` where the kernel cannot, `EPERM` where it may not (a
    /// seccomp filter, Yama's `ptrace_scope`): [`pidfd_refused`] says
    /// whether to skip; `ESRCH` or `ENOENT` where the process has ended.
    pub fn socket_copies(pid: u32) -> std::io::Result<Vec<(i32, std::os::fd::OwnedFd)>> {
        use std::io::Error;
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: pidfd_open takes a pid and flags, no pointers.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if pidfd < 0 {
            return Err(Error::last_os_error());
        }
        // SAFETY: a descriptor pidfd_open just returned, owned here alone.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
        let mut copies = Vec::new();
        for entry in fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|f| f.parse::<i32>().ok())
            else {
                continue;
            };
            let is_socket = fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
            if !is_socket {
                continue;
            }
            // SAFETY: pidfd_getfd takes two descriptors and flags, no pointers.
            let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
            if copy < 0 {
                let error = Error::last_os_error();
                if error.raw_os_error() == Some(libc::EBADF) {
                    continue; // closed since it was listed
                }
                return Err(error);
            }
            // SAFETY: a descriptor pidfd_getfd just returned, owned here alone.
            copies.push((fd, unsafe { OwnedFd::from_raw_fd(copy as i32) }));
        }
        Ok(copies)
    }

    /// An integer socket option of `socket` (`getsockopt`), if it has it.
    pub fn socket_option(
        socket: &impl std::os::fd::AsRawFd,
        level: libc::c_int,
        name: libc::c_int,
    ) -> Option<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`, a
        // live local of that size, and its length into `len`.
        let got = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&raw mut value).cast(),
                &mut len,
            )
        };
        (got == 0).then_some(value)
    }

    /// Breaks the listening socket of process `pid` from outside, as a bug
    /// in the server could: takes a copy of it ([`socket_copies`]) and shuts
    /// it down both ways. Every `accept` on it fails from then on (EINVAL),
    /// and one already waiting is woken to fail. The errors are
    /// [`socket_copies`]'s, and `NotFound` if `pid` holds no listener.
    pub fn break_listener(pid: u32) -> std::io::Result<()> {
        let listener = socket_copies(pid)?
            .into_iter()
            .map(|(_, socket)| socket)
            .find(|socket| socket_option(socket, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1))
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("process {pid} holds no listening socket"),
                )
            })?;
        socket2::SockRef::from(&listener).shutdown(std::net::Shutdown::Both)
    }

    /// Set to `1`, this environment variable makes a check that takes a
    /// server's descriptors fail where the kernel refuses it, instead of
    /// skipping: `.ci/run` sets it, so that CI never passes such a check
    /// without running it.
    pub const REQUIRE_PIDFD: &str = "TESTKIT_REQUIRE_PIDFD";

    /// The rule for every check built on [`socket_copies`], written once:
    /// true if `error` is the kernel refusing `pidfd_open` or
    /// `pidfd_getfd` (ENOSYS, EPERM), after saying on stderr that the check
    /// is skipped and why; false for any other error, which the check
    /// judges itself. Panics instead of skipping under
    /// [`REQUIRE_PIDFD`]`=1`.
    pub fn pidfd_refused(error: &std::io::Error) -> bool {
        let required = std::env::var_os(REQUIRE_PIDFD).is_some_and(|v| v == "1");
        match pidfd_refusal(error.raw_os_error(), required) {
            PidfdRefusal::None => false,
            PidfdRefusal::Skip(why) => {
                eprintln!(
                    "skipped: taking the server's descriptors failed ({error}): {why}; \
                     {REQUIRE_PIDFD}=1 makes this a failure"
                );
                true
            }
            PidfdRefusal::Fail(why) => panic!(
                "taking the server's descriptors failed ({error}): {why}; \
                 {REQUIRE_PIDFD}=1 requires it"
            ),
        }
    }

    /// What a check does about a failure of `pidfd_open` or `pidfd_getfd`.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) enum PidfdRefusal {
        /// Not a refusal: the check judges the error itself.
        None,
        /// The kernel refuses, for this reason: skip the check.
        Skip(&'static str),
        /// The kernel refuses, for this reason, where it must not: fail.
        Fail(&'static str),
    }

    /// [`pidfd_refused`]'s decision, for the error number `errno`, when
    /// the environment does or does not require the check to run.
    pub(crate) fn pidfd_refusal(errno: Option<i32>, required: bool) -> PidfdRefusal {
        let why = match errno {
            Some(libc::ENOSYS) => {
                "this kernel has no pidfd_open or pidfd_getfd (Linux 5.6), \
                 or a seccomp filter hides them"
            }
            // pidfd_getfd asks for ptrace's rights over the process.
            Some(libc::EPERM) => {
                "a seccomp filter (Docker's default profile, for one) or Yama's \
                 ptrace_scope of 2 or more forbids taking another process's \
                 descriptors"
            }
            _ => return PidfdRefusal::None,
        };
        if required {
            PidfdRefusal::Fail(why)
        } else {
            PidfdRefusal::Skip(why)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::{PidfdRefusal, pidfd_refusal};

        /// ENOSYS and EPERM skip, or fail when required; any other error
        /// (the server gone: ESRCH) is the check's own to judge.
        #[test]
        fn pidfd_refusals_skip_unless_required() {
            for errno in [libc::ENOSYS, libc::EPERM] {
                assert!(matches!(
                    pidfd_refusal(Some(errno), false),
                    PidfdRefusal::Skip(_)
                ));
                assert!(matches!(
                    pidfd_refusal(Some(errno), true),
                    PidfdRefusal::Fail(_)
                ));
            }
            assert!(matches!(
                pidfd_refusal(Some(libc::EPERM), false),
                PidfdRefusal::Skip(why) if why.contains("seccomp") && why.contains("ptrace_scope")
            ));
            for other in [Some(libc::ESRCH), Some(libc::EBADF), None] {
                for required in [false, true] {
                    assert_eq!(pidfd_refusal(other, required), PidfdRefusal::None);
                }
            }
        }
    }
}

/// A thread-per-connection line server on a thread of the test, answering
/// each line (newline included) with `transform(line)`; for testing clients
/// and load generators against a server whose behaviour the test chooses.
/// It runs until the test process ends.
pub fn thread_echo_server(transform: fn(&[u8]) -> Vec<u8>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || {
                let Ok(mut writer) = stream.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                    if writer.write_all(&transform(&line)).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

/// Runs `bin --help` and `bin -h` and checks that both read as user
/// documentation: they succeed, say something, and carry none of the marks
/// of a developer's doc comment that clap picked up by mistake (intra-doc
/// links such as ``[`parse_args`]``, `crate::` paths, "Flatten this").
/// Backticks around a flag or a reply, such as `` `ERR server full` ``, are
/// fine. Returns the long help, for further checks.
pub fn check_help(bin: &str) -> String {
    const INTERNAL: &[&str] = &[
        "[`", "`]", "crate::", "Self::", "Flatten", "flatten", "TODO",
    ];
    let mut long = String::new();
    for flag in ["--help", "-h"] {
        let out = Command::new(bin)
            .arg(flag)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {bin} {flag}: {e}"));
        assert!(out.status.success(), "{bin} {flag} failed: {out:?}");
        let text = String::from_utf8(out.stdout).expect("help is UTF-8");
        assert!(
            text.lines().count() >= 3 && text.contains("Usage:"),
            "{bin} {flag} says too little:\n{text}"
        );
        for mark in INTERNAL {
            assert!(
                !text.contains(mark),
                "{bin} {flag} shows developer text ({mark:?}):\n{text}"
            );
        }
        if flag == "--help" {
            long = text;
        }
    }
    long
}
