//! The descriptor ceiling: how many connections the process may hold.
//!
//! Every connection costs a server one descriptor, and a process may hold
//! no more than its soft `RLIMIT_NOFILE`. A desktop Linux sets that to 1024
//! while allowing far more (the hard limit, often 524 288), so a server
//! that keeps the soft limit stops accepting at about a thousand clients,
//! whatever `--max-conns` says. Go's runtime and nginx
//! (`worker_rlimit_nofile`) raise it at start-up for this reason; so does
//! every server here, through [`descriptor_room`].

/// Descriptors a server keeps for itself besides its connections: standard
/// input, output and error, the listener, a poller or ring and its helpers
/// (async-io's eventfd, a signal pipe), with room to spare for the one
/// extra accept that refuses a client at the ceiling.
pub const RESERVED: usize = 16;

/// How many connections a server holds at once, and what sets that number,
/// for the refusal log: `10000 connections (--max-conns)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub conns: usize,
    pub limit: String,
}

/// Raises the soft descriptor limit to the hard one, logs at `info` how
/// many connections that allows, and returns the lower of `wanted` (the
/// value of `flag`, e.g. `--max-conns`) and that room.
///
/// If `wanted` is the higher, one `warn` line says the number the server
/// will really hold and which limit to raise. A client past the returned
/// number is refused (`ERR server full`) rather than left unanswered in
/// the listen queue, which is what `accept` failing with EMFILE would do.
pub fn descriptor_room(wanted: usize, flag: &str) -> Room {
    let asked = Room {
        conns: wanted,
        limit: format!("{wanted} connections ({flag})"),
    };
    let Some(limit) = raise_descriptor_limit() else {
        return asked;
    };
    let room = usize::try_from(limit.now)
        .unwrap_or(usize::MAX)
        .saturating_sub(RESERVED);
    log::info!("{limit}: room for {room} connections");
    if wanted <= room {
        return asked;
    }
    log::warn!(
        "{flag} {wanted} is more than the descriptor limit allows: holding at most {room} \
         connections; to hold more, raise {}",
        limit.what_to_raise()
    );
    Room {
        conns: room,
        limit: format!("{room} connections (RLIMIT_NOFILE {})", limit.now),
    }
}

/// The soft descriptor limit before and after [`raise_descriptor_limit`],
/// and the hard limit it was raised towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    pub was: u64,
    pub now: u64,
    pub hard: u64,
}

impl DescriptorLimit {
    /// What an operator changes to let the process hold more: the soft
    /// limit if it still sits below the hard one (the raise failed), else
    /// the hard limit, which only root raises.
    fn what_to_raise(self) -> &'static str {
        if self.now < self.hard {
            "the soft RLIMIT_NOFILE (`ulimit -Sn`)"
        } else {
            "the hard RLIMIT_NOFILE (`ulimit -Hn` as root, `LimitNOFILE=` in a systemd \
             unit; `fs.nr_open` caps it): see docs/scale.md"
        }
    }
}

impl std::fmt::Display for DescriptorLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "descriptor limit {}", self.now)?;
        if self.was != self.now {
            write!(f, " (raised from {})", self.was)?;
        } else if self.now < self.hard {
            write!(f, " (could not be raised to the hard limit, {})", self.hard)?;
        }
        Ok(())
    }
}

/// Sets the soft `RLIMIT_NOFILE` to the hard limit. Returns the limits, or
/// `None` where there is no such limit (Windows: a socket is a handle,
/// bounded by memory, not by a per-process count).
///
/// A hard limit of "unlimited" cannot be a soft one on every system (macOS
/// refuses anything above `OPEN_MAX`); if the raise fails, the soft limit
/// stays as it was, and the log line says so.
#[cfg(unix)]
pub fn raise_descriptor_limit() -> Option<DescriptorLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live, writable rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        log::warn!(
            "cannot read the descriptor limit: {}",
            std::io::Error::last_os_error()
        );
        return None;
    }
    let was = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a live rlimit for the call's duration.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    // `rlim_t` is u64 on every Unix Rust supports; `as` keeps the
    // conversion quiet where it is the same type.
    #[allow(clippy::unnecessary_cast)]
    let count = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            v as u64
        }
    };
    Some(DescriptorLimit {
        was: count(was),
        now: count(lim.rlim_cur),
        hard: count(lim.rlim_max),
    })
}

#[cfg(not(unix))]
pub fn raise_descriptor_limit() -> Option<DescriptorLimit> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_line_says_what_changed() {
        let raised = DescriptorLimit {
            was: 1024,
            now: 20_000,
            hard: 20_000,
        };
        assert_eq!(
            raised.to_string(),
            "descriptor limit 20000 (raised from 1024)"
        );
        assert!(raised.what_to_raise().contains("hard RLIMIT_NOFILE"));
        let stuck = DescriptorLimit {
            was: 1024,
            now: 1024,
            hard: 4096,
        };
        assert_eq!(
            stuck.to_string(),
            "descriptor limit 1024 (could not be raised to the hard limit, 4096)"
        );
        assert!(stuck.what_to_raise().contains("soft RLIMIT_NOFILE"));
    }
}
