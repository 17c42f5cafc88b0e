//! Command-line arguments every server shares, the parsers that keep their
//! error messages alike, logging set-up, and the exit path.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, Parser};

// Arguments every server shares, flattened into each server's own `Args`.
// `--addr` has no default here because each server defaults to the port its
// article uses; `parse_args` fills it in. These are `//` comments, not doc
// comments: clap turns a flattened struct's doc comment into the `--help`
// text of whichever binary has none of its own.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on, IP:PORT or HOST:PORT (port 0 picks a free port;
    /// a host name is resolved once, its first IPv4 address preferred; use
    /// 0.0.0.0 to accept connections from other hosts)
    #[arg(long, value_name = "IP:PORT", value_parser = listen_addr)]
    pub addr: SocketAddr,

    /// Connections served at once; one more is told `ERR server full` and closed
    #[arg(long, default_value_t = 10_000, value_parser = at_least(1usize))]
    pub max_conns: usize,

    /// Length of the kernel's queue of connections not yet accepted
    #[arg(long, default_value_t = 1024, value_parser = in_range(1, i32::MAX))]
    pub backlog: i32,
}

// `ServerArgs` plus the line limit of the echo protocol: what every echo
// server takes. (A `//` comment, for the reason given on `ServerArgs`.)
#[cfg(feature = "echo")]
#[derive(clap::Args, Debug, Clone)]
pub struct EchoArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Longest accepted line in bytes, newline not counted; a longer one is
    /// answered `ERR line too long` and the connection closed
    #[arg(long, default_value_t = 64 * 1024, value_parser = at_least(1usize))]
    pub max_line: usize,
}

/// A whole number from `min` to `max`, for a flag's `value_parser`. Every
/// numeric flag of every binary goes through this (or [`at_least`]), so
/// that a bad value reads the same everywhere:
/// `must be a whole number from 1 to 65535`.
pub fn in_range<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: TryFrom<i128> + TryInto<i128> + Copy + fmt::Display + Send + Sync,
{
    move |s: &str| whole_number(s, wide(min), wide(max), &format!("from {min} to {max}"))
}

/// A whole number no less than `min`, with no upper bound that matters
/// (the type's own maximum): `must be a whole number, at least 1`.
pub fn at_least<T>(min: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: TryFrom<i128> + TryInto<i128> + Copy + fmt::Display + Send + Sync,
{
    move |s: &str| whole_number(s, wide(min), i128::MAX, &format!("at least {min}"))
}

// Every integer type Rust has up to 64 bits fits an i128.
fn wide<T: TryInto<i128>>(n: T) -> i128 {
    n.try_into().unwrap_or(i128::MAX)
}

// Parses as the widest integer first, so that a value too large for the
// flag's type gets the same message as one just past its range, not Rust's
// "number too large to fit in target type".
fn whole_number<T: TryFrom<i128>>(s: &str, min: i128, max: i128, range: &str) -> Result<T, String> {
    let wanted = || format!("must be a whole number, {range}");
    match s.trim().parse::<i128>() {
        Ok(n) if (min..=max).contains(&n) => {
            T::try_from(n).map_err(|_| format!("{} ({n} is too large)", wanted()))
        }
        _ => Err(wanted()),
    }
}

/// `--addr` of a server: `IP:PORT`, or `HOST:PORT` resolved once, here.
///
/// A name may have several addresses (`localhost` is often `::1` and
/// `127.0.0.1`, in either order). A listener binds one, and the first IPv4
/// address wins: the clients, the docs and every default in this workspace
/// say 127.0.0.1, so `--addr localhost:PORT` must meet them there, whatever
/// order the resolver returns. A name with only IPv6 addresses binds the
/// first of those. The ready line shows the address bound.
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    let addrs = resolve(s)?;
    Ok(addrs
        .iter()
        .find(|a| a.is_ipv4())
        .copied()
        .unwrap_or(addrs[0]))
}

/// `--addr` of a client: `IP:PORT` or `HOST:PORT`, with every address the
/// name has (IPv4 first, for the reason given at [`listen_addr`]), so that
/// a connect can try each in turn, as nc and curl do.
#[derive(Debug, Clone)]
pub struct ServerAddr {
    /// What the user wrote, for messages.
    pub text: String,
    /// What it resolved to, IPv4 addresses first.
    pub addrs: Vec<SocketAddr>,
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a client's `--addr` into a [`ServerAddr`].
pub fn server_addr(s: &str) -> Result<ServerAddr, String> {
    let mut addrs = resolve(s)?;
    // Stable: the resolver's order is kept within each family.
    addrs.sort_by_key(|a| !a.is_ipv4());
    Ok(ServerAddr {
        text: s.to_string(),
        addrs,
    })
}

fn resolve(s: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    // `to_socket_addrs` wants a port; without one its error ("invalid socket
    // address") does not say what is missing.
    let has_port = s
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        return Err(
            "expected IP:PORT or HOST:PORT, such as 127.0.0.1:8093 or localhost:8093".into(),
        );
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the host name: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err("the host name has no address".into());
    }
    Ok(addrs)
}

/// Which flags the user gave on the command line, as opposed to their
/// defaults: for a server whose flags apply only in some modes, so that a
/// flag that would be ignored is refused instead.
pub struct Given<'a>(&'a ArgMatches);

impl Given<'_> {
    /// True if the argument `id` (its field name) was given.
    pub fn has(&self, id: &str) -> bool {
        matches!(
            self.0.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    }
}

/// Parses the command line into `T`, with per-server defaults given as
/// `(argument id, value)` pairs, e.g. `[("addr", "127.0.0.1:8093")]`.
///
/// The defaults are set on the clap command itself, so `--help` shows them.
pub fn parse_args<T: Parser>(defaults: &[(&'static str, &'static str)]) -> T {
    parse_args_with(defaults, |command| command, |_, _| Ok(()))
}

/// [`parse_args`], with `edit` applied to the clap command first (for a
/// server whose common flags behave differently, so that its `--help` says
/// what that server does: epoll-http refuses with `503`, not `ERR server
/// full`), and `check` run on the result: an `Err` is refused the way clap
/// refuses conflicting flags, one `error:` line, the usage, exit status 2.
pub fn parse_args_with<T: Parser>(
    defaults: &[(&'static str, &'static str)],
    edit: impl FnOnce(clap::Command) -> clap::Command,
    check: impl FnOnce(&T, &Given) -> Result<(), String>,
) -> T {
    // `--queue -1` should meet the flag's own message, not clap's
    // "unexpected argument '-1'".
    let mut command = edit(T::command()).mut_args(|arg| {
        let takes_value = arg.get_action().takes_values();
        arg.allow_negative_numbers(takes_value)
    });
    for &(id, value) in defaults {
        command = command.mut_arg(id, |arg| arg.default_value(value).required(false));
    }
    let matches = command.clone().get_matches();
    let args = T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(why) = check(&args, &Given(&matches)) {
        command
            .error(clap::error::ErrorKind::ArgumentConflict, why)
            .exit();
    }
    args
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
}

/// Turns `main`'s result into the process's exit: one `error: …` line on
/// stderr and status 1 on failure.
pub fn exit_with(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_alike_whatever_the_type() {
        assert_eq!(in_range::<u16>(1, 32768)("8"), Ok(8));
        let msg = Err("must be a whole number, from 1 to 32768".to_string());
        assert_eq!(in_range::<u16>(1, 32768)("0"), msg);
        assert_eq!(in_range::<u16>(1, 32768)("65536"), msg);
        assert_eq!(in_range::<u16>(1, 32768)("many"), msg);
        assert_eq!(
            at_least::<usize>(1)("0"),
            Err("must be a whole number, at least 1".into())
        );
        assert_eq!(
            at_least::<u16>(1)("99999"),
            Err("must be a whole number, at least 1 (99999 is too large)".into())
        );
    }

    #[test]
    fn a_name_binds_its_ipv4_address_first() {
        assert_eq!(
            listen_addr("127.0.0.1:0"),
            Ok("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(listen_addr("[::1]:7"), Ok("[::1]:7".parse().unwrap()));
        let local = listen_addr("localhost:5464").unwrap();
        assert_eq!(local, "127.0.0.1:5464".parse().unwrap());
        assert!(listen_addr("localhost").unwrap_err().contains("HOST:PORT"));
        assert!(
            listen_addr("localhost:99999")
                .unwrap_err()
                .contains("HOST:PORT")
        );
        let client = server_addr("localhost:8093").unwrap();
        assert_eq!(client.addrs[0], "127.0.0.1:8093".parse().unwrap());
        assert_eq!(client.to_string(), "localhost:8093");
    }
}
