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
//! | `RLIMIT_AS` (`ulimit -v`) | its stacks' address space and the most its connection's buffers can take ([`connection_heap`]); and, once, room for glibc's malloc arenas (see [`bound_malloc_arenas`]) |
//!
//! Address space is a ceiling of its own kind: a thread that started fine
//! can still run out later, when a client's long line makes its buffers
//! grow, and Rust ends the whole process on an allocation that fails. So
//! the budget is each connection's worst case, not what it holds when it
//! starts: stacks, and the buffers the longest line `--max-line` allows
//! grows, all connections at once. At `ulimit -v 1048576` with the default
//! 64 KiB lines, that is about 615 KiB a connection (279 KiB of stacks,
//! 336 KiB of buffers), and the ceiling about 1 375 threads, where stacks
//! alone would allow some 3 000 whose long lines would end the server.
//!
//! Each limit is read with what is already in use and a reserve for the
//! rest of the process, so the ceiling is a little under the real edge. A
//! limit another process lowers later (other users' tasks) is met by
//! `spawn` failing, which the server answers the same way. Address space is
//! also checked before each spawn ([`AddressSpace`]), since what the
//! process maps besides threads can grow after the ceiling was worked out.

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

/// Address space of one heap of a malloc arena beyond the first
/// (`HEAP_MAX_SIZE` on 64-bit targets). An arena grows by adding heaps as
/// it fills, each a 64 MiB reservation that `ulimit -v` counts in full,
/// however little of it is touched. To align a new heap glibc maps twice
/// that and gives back the rest, so for a moment it needs 128 MiB.
#[cfg(target_os = "linux")]
const ARENA_SIZE: usize = 64 << 20;
/// Address space kept free before each spawn, beyond the new connection's
/// own: what threads started but not yet running still map (their signal
/// stacks), and the allocations of the threads already serving.
#[cfg(target_os = "linux")]
const SPAWN_HEADROOM: usize = 32 << 20;

/// Caps glibc's malloc arenas at one per CPU, four at most, and returns
/// that cap. glibc's default, eight per CPU, reserves up to 64 MiB of
/// address space each as threads first allocate: under `ulimit -v` that
/// alone could take the whole limit, leaving room for no thread, and an
/// arena mapped after a spawn can take the room the next thread's signal
/// stack needed (whose failure ends the process). A connection thread
/// allocates rarely (its line and reply buffers), so a few arenas serve it
/// without contention. Call it before the first thread starts.
#[cfg(target_os = "linux")]
pub fn bound_malloc_arenas() -> usize {
    let arenas = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(4);
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt takes no pointers; M_ARENA_MAX with a positive count
    // only lowers a bound glibc checks when it would create an arena.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas as libc::c_int);
    }
    arenas
}

#[cfg(not(target_os = "linux"))]
pub fn bound_malloc_arenas() -> usize {
    1
}

/// Heap one connection can hold at once, at worst, when lines may be
/// `max_line` bytes long: its input buffer at its largest
/// ([`shared::LineBuffer::most_storage`], 128 KiB at 64 KiB lines) and
/// the block half that size it is copied out of as it grows (a `realloc`
/// that cannot grow in place holds both); its reply buffer, which `echo`
/// keeps to that storage and an `ERR` line, and empties before it grows;
/// and a page for each of those blocks (malloc's header, and the rounding
/// of a block mapped on its own) and for the thread's small allocations
/// (its name, handle and hand-over channel, malloc's per-thread cache).
#[cfg(target_os = "linux")]
pub fn connection_heap(max_line: usize) -> usize {
    let input = shared::LineBuffer::most_storage(max_line);
    let replies = input.saturating_add(shared::echo::ERR_LINE_TOO_LONG.len());
    input
        .saturating_add(input / 2)
        .saturating_add(replies)
        .saturating_add(4 * page())
}

/// `RLIMIT_AS`, checked before each thread is started: the limit less what
/// the process maps now must hold one more connection and some headroom.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub struct AddressSpace {
    limit: usize,
    per_connection: usize,
}

impl AddressSpace {
    /// `None` when address space is unlimited (the usual case: then the
    /// check costs nothing) or cannot be read (not Linux).
    #[cfg(target_os = "linux")]
    pub fn limited(stack: usize, max_line: usize) -> Option<AddressSpace> {
        Some(AddressSpace {
            limit: soft_limit(libc::RLIMIT_AS)?,
            per_connection: per_thread(stack).saturating_add(connection_heap(max_line)),
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn limited(_stack: usize, _max_line: usize) -> Option<AddressSpace> {
        None
    }

    /// Whether another thread fits now; `Err` says how much is left.
    pub fn room_for_one(&self) -> Result<(), String> {
        #[cfg(target_os = "linux")]
        if let Some(used) = address_space_in_use() {
            let left = self.limit.saturating_sub(used);
            if left < self.per_connection.saturating_add(SPAWN_HEADROOM) {
                return Err(format!(
                    "{} MiB of RLIMIT_AS = {} MiB left, {} KiB a connection (ulimit -v)",
                    left >> 20,
                    self.limit >> 20,
                    self.per_connection >> 10
                ));
            }
        }
        Ok(())
    }
}

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

/// The thread ceiling for threads of `stack` bytes of stack serving lines
/// of up to `max_line` bytes, with malloc capped at `arenas` arenas
/// ([`bound_malloc_arenas`]), or `None` where the limits cannot be read
/// (not Linux).
#[cfg(target_os = "linux")]
pub fn thread_ceiling(stack: usize, max_line: usize, arenas: usize) -> Option<Ceiling> {
    let mut candidates = Vec::new();
    if let (Some(max), Some(used)) = (read_number("/proc/sys/vm/max_map_count"), maps_in_use()) {
        // Each arena is two mappings: the part in use and the reserved rest.
        let arena_maps = 2 * arenas;
        candidates.push(Ceiling {
            threads: max.saturating_sub(used + arena_maps + RESERVE_MAPS) / MAPS_PER_THREAD,
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
        let stacks = per_thread(stack);
        let buffers = connection_heap(max_line);
        // The buffers themselves are counted a connection at a time. Each
        // arena beyond the first (which grows by brk) adds heaps as they
        // fill: besides what they hold, it needs the unused rest of its
        // last heap, and 64 MiB more for the moment glibc maps a new heap
        // at double size to align it.
        let arenas = arenas.saturating_sub(1) * 2 * ARENA_SIZE;
        let per_connection = stacks.saturating_add(buffers);
        candidates.push(Ceiling {
            threads: max.saturating_sub(used + arenas + RESERVE_ADDRESS_SPACE) / per_connection,
            limit: format!(
                "RLIMIT_AS = {} MiB, {} KiB of address space a connection: \
                 {} KiB of stacks, {} KiB of buffers at most (ulimit -v)",
                max >> 20,
                per_connection >> 10,
                stacks >> 10,
                buffers >> 10
            ),
        });
    }
    candidates.into_iter().min_by_key(|c| c.threads)
}

#[cfg(not(target_os = "linux"))]
pub fn thread_ceiling(_stack: usize, _max_line: usize, _arenas: usize) -> Option<Ceiling> {
    None
}

/// Address space one thread maps: its stack and the signal stack Rust
/// gives it, each with a guard page.
#[cfg(target_os = "linux")]
fn per_thread(stack: usize) -> usize {
    stack + signal_stack() + 2 * page()
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

/// What the process maps now, as `RLIMIT_AS` counts it: `VmSize`, the
/// first field of `/proc/self/statm`, in pages.
#[cfg(target_os = "linux")]
fn address_space_in_use() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().next()?.parse().ok()?;
    Some(pages * page())
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
