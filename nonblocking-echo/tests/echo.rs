//! Black-box tests of nonblocking-echo.

use shared::testing::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_nonblocking-echo");

mod spinning {
    shared::echo_suite!(shared::testing::suite::EchoSpec {
        bin: super::BIN,
        args: &[],
        suffix: "",
        concurrent: true,
        busy_polls: true,
    });
}

mod with_idle_sleep {
    shared::echo_suite!(shared::testing::suite::EchoSpec {
        bin: super::BIN,
        args: &["--idle-sleep-ms", "1"],
        suffix: "",
        concurrent: true,
        busy_polls: false,
    });
}

/// More than --max-conns clients: the extra one is told and closed; a place
/// frees as soon as a client leaves.
#[test]
fn refuses_past_max_conns() {
    let server = TestServer::start(BIN, &["--max-conns", "2", "--idle-sleep-ms", "1"]);
    let mut a = server.connect();
    let mut b = server.connect();
    assert_eq!(a.request("a"), "A\n");
    assert_eq!(b.request("b"), "B\n");

    let mut c = server.connect();
    assert_eq!(c.read_line().unwrap(), b"ERR server full\n");
    assert_eq!(c.read_to_end().unwrap(), b"");

    drop(a);
    assert!(shared::testing::eventually(|| {
        let mut d = server.connect();
        d.send(b"d\n");
        d.read_line().unwrap() == b"D\n"
    }));
    assert_eq!(b.request("b again"), "B AGAIN\n");
}

#[cfg(target_os = "linux")]
mod cpu {
    use std::thread;
    use std::time::Duration;

    use shared::testing::{TestServer, proc};

    use super::BIN;

    /// CPU the server uses over two seconds with ten silent clients.
    fn idle_cpu(args: &[&str]) -> Duration {
        let server = TestServer::start(BIN, args);
        let clients: Vec<_> = (0..10).map(|_| server.connect()).collect();
        let before = proc::total_cpu(server.pid());
        thread::sleep(Duration::from_secs(2));
        let used = proc::total_cpu(server.pid()) - before;
        drop(clients);
        used
    }

    /// The article's point: with nothing to do, the busy loop still burns
    /// CPU. (A sleeping server would show about zero; even sharing two cores
    /// with other tests, a spinning one gets far more than this.)
    #[test]
    fn spinning_burns_cpu_while_idle() {
        let used = idle_cpu(&[]);
        assert!(
            used >= Duration::from_millis(200),
            "only {used:?} of CPU in 2 s"
        );
    }

    /// The article's commented-out `time.sleep`: idle passes cost little.
    #[test]
    fn idle_sleep_stops_the_burn() {
        let used = idle_cpu(&["--idle-sleep-ms", "10"]);
        assert!(used < Duration::from_millis(200), "{used:?} of CPU in 2 s");
    }
}
