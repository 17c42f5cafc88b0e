//! Black-box tests of nonblocking-echo.

const BIN: &str = env!("CARGO_BIN_EXE_nonblocking-echo");

mod spinning {
    testkit::echo_suite!(testkit::suite::EchoSpec {
        bin: super::BIN,
        args: &[],
        suffix: "",
        concurrent: true,
        busy_polls: true,
    });
}

mod with_idle_sleep {
    testkit::echo_suite!(testkit::suite::EchoSpec {
        bin: super::BIN,
        args: &["--idle-sleep-ms", "1"],
        suffix: "",
        concurrent: true,
        busy_polls: false,
    });
}

/// More than --max-conns clients: the extra ones are told and closed.
#[test]
fn refuses_past_max_conns() {
    testkit::suite::refuses_past_max_conns(&with_idle_sleep::SPEC);
}

/// Each pass tries the listener and reads each connection once: two
/// clients that pipeline without pause do not hold the loop, with no
/// budget needed.
#[test]
fn a_flooder_does_not_hold_the_loop() {
    testkit::suite::a_flooder_does_not_hold_the_loop(&spinning::SPEC, false);
}

/// The same with `--idle-sleep-ms`: a pass that moved bytes never sleeps.
#[test]
fn with_idle_sleep_a_flooder_does_not_hold_the_loop() {
    testkit::suite::a_flooder_does_not_hold_the_loop(&with_idle_sleep::SPEC, false);
}

#[cfg(target_os = "linux")]
mod cpu {
    use std::time::Duration;

    use testkit::TestServer;

    use super::BIN;

    /// CPU the server uses over two seconds with ten silent clients.
    fn idle_cpu(args: &[&str]) -> Duration {
        testkit::suite::idle_cpu(&TestServer::start(BIN, args))
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

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_nonblocking-echo"));
}

/// An idle connection holds no buffer, although every pass tries a read on
/// it: 2000 connections that each made a round trip add less than 1 KiB
/// apiece.
#[cfg(target_os = "linux")]
#[test]
fn an_idle_connection_holds_no_buffer() {
    testkit::suite::memory_per_spoken_connection(&with_idle_sleep::SPEC, 2000, 1024);
}

/// `--idle-sleep-ms` past a second would leave every client waiting that long.
#[test]
fn a_sleep_past_a_second_is_refused() {
    testkit::cli::refused(
        env!("CARGO_BIN_EXE_nonblocking-echo"),
        &["--idle-sleep-ms", "5000"],
        "must be a whole number, from 0 to 1000",
    );
}
