//! The thread ceiling: how many connection threads this process can start
//! before the system says no, worked out once at start-up.
//!
//! Article 001 warns that a thread per client "occupies the system's
//! resources" until, with hundreds or thousands of clients, the server falls
//! over. It does fall over, and not always politely: a thread that cannot
//! get its stack makes `spawn` fail (EAGAIN), which a server can answer, but
//! a thread that gets its stack and then cannot map the small stack its
//! signal handlers run on (Rust sets one up in every thread) ends the whole
//! process. Both happen at limits a program can read beforehand, so thread
//! mode reads them, caps its threads below the lowest, and tells the next
//! client `ERR server full`, as it does at `--max-conns`.
//!
//! | limit | what a thread takes from it |
//! |---|---|
//! | `vm.max_map_count` (65 530 by default) | 4 memory mappings: its stack and guard page, its signal stack and guard |
//! | `kernel.threads-max`, `kernel.pid_max` | a task, system-wide |
//! | `RLIMIT_NPROC` (`ulimit -u`; not held to root) | a task of this user |
//! | `RLIMIT_AS` (`ulimit -v`) | its stacks' address space (and glibc's malloc arenas, 64 MiB each, up to eight per CPU) |
//!
//! Each is read with what is already in use and a reserve for the rest of
//! the process, so the ceiling is a little under the real edge. A limit
//! another process lowers later (other users' tasks) is met by `spawn`
//! failing, which the server answers the same way.

use std::fmt;

/// Memory mappings one thread adds.
#[cfg(target_os = "linux")]
const MAPS_PER_THREAD: usize = 4;
/// Mappings, tasks and address space kept back for everything else the
/// process and the system do.
#[cfg(target_os = "linux")]
const RESERVE_MAPS: usize = 512;
#[cfg(target_os = "linux")]
const RESERVE_TASKS: usize = 64;
#[cfg(target_os = "linux")]
const RESERVE_ADDRESS_SPACE: usize = 64 << 20;

/// The lowest of the limits on threads, and which one it is.
#[derive(Debug, Clone)]
pub struct Ceiling {
    /// Connection threads that fit.
    pub threads: usize,
    /// The limit that sets it, by name, with its value and what a thread
    /// takes from it: `vm.max_map_count = 65530, 4 mappings a thread`.
    pub limit: String,
}

impl fmt::Display for Ceiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} threads ({})", self.threads, self.limit)
    }
}

/// The thread ceiling for threads of `stack` bytes of stack, or `None`
/// where the limits cannot be read (not Linux).
#[cfg(target_os = "linux")]
pub fn thread_ceiling(stack: usize) -> Option<Ceiling> {
    let mut candidates = Vec::new();
    if let (Some(max), Some(used)) = (read_number("/proc/sys/vm/max_map_count"), maps_in_use()) {
        candidates.push(Ceiling {
            threads: max.saturating_sub(used + RESERVE_MAPS) / MAPS_PER_THREAD,
            limit: format!("vm.max_map_count = {max}, {MAPS_PER_THREAD} mappings a thread"),
        });
    }
    if let Some(tasks) = tasks_in_system() {
        for name in ["threads-max", "pid_max"] {
            if let Some(max) = read_number(&format!("/proc/sys/kernel/{name}")) {
                candidates.push(Ceiling {
                    threads: max.saturating_sub(tasks + RESERVE_TASKS),
                    limit: format!("kernel.{name} = {max}, tasks system-wide"),
                });
            }
        }
    }
    // SAFETY: geteuid has no preconditions: it takes no pointers.
    let root = unsafe { libc::geteuid() } == 0;
    if let Some(max) = soft_limit(libc::RLIMIT_NPROC).filter(|_| !root) {
        candidates.push(Ceiling {
            threads: max.saturating_sub(tasks_of_this_user() + 1),
            limit: format!("RLIMIT_NPROC = {max}, tasks of this user (ulimit -u)"),
        });
    }
    if let (Some(max), Some(used)) = (soft_limit(libc::RLIMIT_AS), address_space_in_use()) {
        let per_thread = stack + signal_stack() + 2 * page();
        // glibc gives threads malloc arenas of their own, up to eight per
        // CPU, each reserving 64 MiB of address space (it uses little of
        // it, but `ulimit -v` counts reservations).
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let arenas = 8 * cpus * (64 << 20);
        candidates.push(Ceiling {
            threads: max.saturating_sub(used + arenas + RESERVE_ADDRESS_SPACE) / per_thread,
            limit: format!(
                "RLIMIT_AS = {} MiB, {} KiB of address space a thread (ulimit -v)",
                max >> 20,
                per_thread >> 10
            ),
        });
    }
    candidates.into_iter().min_by_key(|c| c.threads)
}

#[cfg(not(target_os = "linux"))]
pub fn thread_ceiling(_stack: usize) -> Option<Ceiling> {
    None
}

#[cfg(target_os = "linux")]
fn read_number(path: &str) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A soft resource limit, `None` if unlimited.
#[cfg(target_os = "linux")]
fn soft_limit(resource: libc::__rlimit_resource_t) -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit needs a pointer to a writable rlimit: `lim`, a live local.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    usize::try_from(lim.rlim_cur).ok()
}

#[cfg(target_os = "linux")]
fn maps_in_use() -> Option<usize> {
    Some(
        std::fs::read_to_string("/proc/self/maps")
            .ok()?
            .lines()
            .count(),
    )
}

/// Every task (thread) on the system: the total in `/proc/loadavg`'s
/// `running/total` field.
#[cfg(target_os = "linux")]
fn tasks_in_system() -> Option<usize> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    loadavg
        .split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()
}

/// Tasks (threads) of every process of this user, as `RLIMIT_NPROC` counts.
#[cfg(target_os = "linux")]
fn tasks_of_this_user() -> usize {
    // SAFETY: getuid has no preconditions: it takes no pointers.
    let me = unsafe { libc::getuid() };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .flatten()
        .filter_map(|p| std::fs::read_to_string(p.path().join("status")).ok())
        .filter(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<libc::uid_t>().ok())
                == Some(me)
        })
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
        })
        .sum()
}

#[cfg(target_os = "linux")]
fn address_space_in_use() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib << 10)
}

/// The signal stack Rust maps for each thread: `SIGSTKSZ` or the kernel's
/// `AT_MINSIGSTKSZ`, whichever is larger, and a guard page.
#[cfg(target_os = "linux")]
fn signal_stack() -> usize {
    // SAFETY: getauxval has no preconditions: it takes no pointers.
    let min = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    min.max(libc::SIGSTKSZ) + page()
}

#[cfg(target_os = "linux")]
fn page() -> usize {
    // SAFETY: sysconf has no preconditions: it takes no pointers.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}
