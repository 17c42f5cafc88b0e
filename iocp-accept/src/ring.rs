//! The io_uring instance both Linux loops run on: its queues' sizes, its
//! set-up flags by kernel, and the probe for multishot receive. Set-up only;
//! the loops are in `uring.rs` (IOCP's shape) and `multishot.rs`.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, types};
use log::info;

/// The submission queue's size unless `--ring-entries` says otherwise: a
/// power of two from the connections the server may hold (each has about
/// one operation waiting to go in at a time), at least 16 and at most 1024.
/// A batch that needs more entries than the queue holds is submitted in
/// parts ([`Submissions`]), so a larger queue buys little.
pub fn ring_entries(conns: usize) -> u32 {
    let wanted = conns.clamp(16, 1024).next_power_of_two();
    u32::try_from(wanted).expect("at most 1024")
}

/// The completion queue's size: room for one completion from every
/// connection at once (a burst in which every client sends), at least twice
/// the submission queue and at most 32768 entries of 16 bytes. Completions
/// that do not fit are not lost (the kernel holds them back, and the next
/// `io_uring_enter` says so with EBUSY), but each one held back costs an
/// allocation in the kernel and a slower reap.
pub fn completion_entries(conns: usize, submissions: u32) -> u32 {
    let wanted = conns.clamp(1, 32768).next_power_of_two();
    u32::try_from(wanted)
        .expect("at most 32768")
        .max(2 * submissions)
}

/// Creates the ring, or says in one line why the kernel refused.
///
/// `SINGLE_ISSUER | DEFER_TASKRUN` (Linux 6.1): only this thread submits,
/// and the kernel runs the work that completes operations when this thread
/// waits in `io_uring_enter`, instead of interrupting it from another CPU.
/// Before 6.1, `COOP_TASKRUN` (5.19) at least stops those interruptions
/// being forced; before that, the plain ring. One info line says which.
pub fn new_ring(entries: u32, completions: u32) -> anyhow::Result<IoUring> {
    type SetFlags = fn(&mut io_uring::Builder);
    let attempts: [(&str, SetFlags); 3] = [
        ("SINGLE_ISSUER | DEFER_TASKRUN", |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        }),
        ("COOP_TASKRUN (no DEFER_TASKRUN: Linux before 6.1)", |b| {
            b.setup_coop_taskrun();
        }),
        ("no task-run flags (Linux before 5.19)", |_| {}),
    ];
    let mut last = None;
    for (name, flags) in attempts {
        let mut builder = IoUring::builder();
        flags(&mut builder);
        builder.setup_cqsize(completions);
        match builder.build(entries) {
            Ok(ring) => {
                info!(
                    "io_uring set up with {name}, {entries} submission and {completions} \
                     completion entries"
                );
                return Ok(ring);
            }
            // An unknown flag: try the next set.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(unavailable(e)),
        }
    }
    Err(unavailable(last.expect("tried at least once")))
}

/// Whether this kernel has multishot receive (Linux 6.0), found out by
/// trying it: `IORING_REGISTER_PROBE` lists opcodes, and multishot is a flag
/// of the receive opcode, not an opcode of its own. On a socket pair with one
/// byte waiting, a multishot receive from a one-buffer ring either delivers
/// it (and says more may come) or fails with `EINVAL`.
pub fn multishot_recv_works() -> bool {
    try_multishot_recv().unwrap_or(false)
}

fn try_multishot_recv() -> io::Result<bool> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU16, Ordering};
    use types::BufRingEntry;

    // Declared before the ring, so dropped after it: the kernel may use
    // them until the ring is gone.
    let mut buf = [0u8; 64];
    let page = Page::new()?;
    let mut ring = IoUring::new(4)?;
    let entry = page.0.cast::<BufRingEntry>();
    // SAFETY: `entry` is the first descriptor of a zeroed, page-aligned
    // page, which outlives the ring; the tail lives in that descriptor.
    unsafe {
        (*entry).set_addr(buf.as_mut_ptr() as u64);
        (*entry).set_len(buf.len() as u32);
        (*entry).set_bid(0);
        (*BufRingEntry::tail(entry).cast::<AtomicU16>()).store(1, Ordering::Release);
        ring.submitter()
            .register_buf_ring_with_flags(entry as u64, 1, 0, 0)?;
    }
    let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    b.write_all(b"x")?;
    let recv = opcode::RecvMulti::new(types::Fd(a.as_raw_fd()), 0)
        .build()
        .user_data(1);
    // SAFETY: the receive writes only into the registered buffer, which
    // outlives the ring.
    unsafe { ring.submission().push(&recv) }.map_err(|_| io::Error::other("queue full"))?;
    ring.submit_and_wait(1)?;
    let done = ring
        .completion()
        .next()
        .ok_or_else(|| io::Error::other("no completion"))?;
    Ok(done.result() == 1 && io_uring::cqueue::more(done.flags()))
}

/// One zeroed, page-aligned page, freed on drop: a buffer ring's memory.
struct Page(*mut u8);

impl Page {
    const LAYOUT: std::alloc::Layout = match std::alloc::Layout::from_size_align(4096, 4096) {
        Ok(layout) => layout,
        Err(_) => panic!("a page"),
    };

    fn new() -> io::Result<Page> {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(Self::LAYOUT) };
        if p.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        Ok(Page(p))
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { std::alloc::dealloc(self.0, Self::LAYOUT) }
    }
}

/// The one line that says why io_uring cannot be used.
fn unavailable(e: io::Error) -> anyhow::Error {
    let why = match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            "io_uring_setup failed with ENOSYS: this kernel has no io_uring, or a seccomp \
             filter (such as Docker's default profile) blocks it; allow io_uring_setup, \
             io_uring_enter and io_uring_register (e.g. --security-opt seccomp=unconfined)"
        }
        Some(libc::EPERM) => {
            "io_uring_setup failed with EPERM: io_uring is disabled by \
             kernel.io_uring_disabled; `sysctl -w kernel.io_uring_disabled=0`, or add \
             this user's group to kernel.io_uring_group"
        }
        Some(libc::ENOMEM) => {
            "io_uring_setup failed with ENOMEM: the locked-memory limit is too low for \
             the ring (kernels before 5.12 charge it to RLIMIT_MEMLOCK); raise `ulimit -l`"
        }
        _ => "io_uring_setup failed",
    };
    anyhow::anyhow!("io_uring is not available: {why} ({e})")
}
