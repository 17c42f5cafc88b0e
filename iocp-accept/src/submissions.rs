//! Entries on their way into io_uring's submission queue, for both loops.
//!
//! The queue holds [`ring_entries`](crate::ring::ring_entries); a batch of
//! completions can ask for more (a burst of a thousand receives, each
//! wanting its send). When it is full in the middle of a batch, what it
//! holds is handed to the kernel at once and the batch goes on. If the
//! kernel will not take it now (`EBUSY` with completions it could not post,
//! `EAGAIN` when it cannot allocate a request, `EINTR`), the entries wait
//! here, in order, and [`Submissions::flush`] puts them all in before the
//! loop waits: a full queue delays an operation, never ends the server, and
//! never leaves one behind while the loop sleeps. Order matters: a cancel
//! names an operation by key, and must reach the kernel before any later
//! entry that reuses that key.

use std::collections::VecDeque;
use std::io;

use io_uring::{IoUring, squeue};
use log::debug;

/// What [`Submissions`] needs of a ring: a queue to push into, and a way to
/// hand that queue to the kernel. [`IoUring`] is the one the servers use.
pub trait Ring {
    /// Queues `entry`; `false` if the queue is full.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must stay valid, unmoved and unfreed until
    /// the operation's last completion.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> bool;

    /// Hands the queue to the kernel without waiting.
    fn submit(&mut self) -> io::Result<usize>;
}

impl Ring for IoUring {
    #[inline]
    unsafe fn push(&mut self, entry: &squeue::Entry) -> bool {
        // SAFETY: the caller keeps what `entry` points to alive.
        unsafe { self.submission().push(entry) }.is_ok()
    }

    fn submit(&mut self) -> io::Result<usize> {
        IoUring::submit(self)
    }
}

/// An `io_uring_enter` failure that passes: retry after reaping.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)
    )
}

/// Entries the queue could not take yet, oldest first.
#[derive(Default)]
pub struct Submissions {
    held: VecDeque<squeue::Entry>,
    /// Times the queue filled mid-batch and was submitted early, for the log.
    early: u64,
    /// Times the kernel would not take it then, so entries were held.
    deferred: u64,
}

impl Submissions {
    /// Queues `entry`.
    ///
    /// Inlined, with the rare part out of line: measured with bench-models'
    /// counts at depth 1, the two loops take 536 and 712 instructions a
    /// request so, and 552 and 781 without these hints.
    ///
    /// # Safety
    ///
    /// As for [`Ring::push`].
    #[inline]
    pub unsafe fn push(&mut self, ring: &mut impl Ring, entry: squeue::Entry) -> io::Result<()> {
        // The common case: nothing held back, and room in the queue.
        // SAFETY: the caller keeps what `entry` points to alive.
        if self.held.is_empty() && unsafe { ring.push(&entry) } {
            return Ok(());
        }
        // SAFETY: as above.
        unsafe { self.push_when_full(ring, entry) }
    }

    /// The rare part of [`push`](Self::push): the queue is full, or
    /// entries are held already (and this one must go after them).
    ///
    /// # Safety
    ///
    /// As for `push`.
    #[cold]
    #[inline(never)]
    unsafe fn push_when_full(
        &mut self,
        ring: &mut impl Ring,
        entry: squeue::Entry,
    ) -> io::Result<()> {
        if self.held.is_empty() {
            self.early += 1;
            debug!(
                "submission queue full mid-batch: submitted early ({} so far)",
                self.early
            );
            match ring.submit() {
                // SAFETY: the caller keeps what `entry` points to alive.
                Ok(_) if unsafe { ring.push(&entry) } => return Ok(()),
                Ok(_) => {}
                Err(e) if is_transient(&e) => {
                    self.deferred += 1;
                    debug!("submission deferred: {e} ({} so far)", self.deferred);
                }
                Err(e) => return Err(e),
            }
        }
        self.held.push_back(entry);
        Ok(())
    }

    /// Moves every held entry into the queue, oldest first, handing the
    /// queue to the kernel each time it fills; call before each wait.
    /// Returns `Ok(false)` if entries are still held because the kernel
    /// would not take them just now: the loop must then not block in its
    /// wait (it reaps what has completed and calls this again), since the
    /// completions it would wait for may be those of the held entries.
    #[inline]
    pub fn flush(&mut self, ring: &mut impl Ring) -> io::Result<bool> {
        if self.held.is_empty() {
            return Ok(true);
        }
        self.flush_held(ring)
    }

    #[cold]
    #[inline(never)]
    fn flush_held(&mut self, ring: &mut impl Ring) -> io::Result<bool> {
        while let Some(entry) = self.held.front() {
            // SAFETY: held entries were pushed under `push`'s contract.
            if unsafe { ring.push(entry) } {
                self.held.pop_front();
                continue;
            }
            match ring.submit() {
                Ok(_) => {}
                Err(e) if is_transient(&e) => {
                    debug!(
                        "submission deferred again: {e}; {} entries held",
                        self.held.len()
                    );
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use io_uring::opcode;

    use super::*;

    /// A ring whose queue holds `capacity` entries and whose kernel takes
    /// them all on submit, except that the first `refusals` submits fail
    /// with `EBUSY`, as after a completion queue overflow.
    struct FakeRing {
        capacity: usize,
        queue: Vec<u64>,
        kernel: Vec<u64>,
        refusals: usize,
    }

    impl Ring for FakeRing {
        unsafe fn push(&mut self, entry: &squeue::Entry) -> bool {
            if self.queue.len() == self.capacity {
                return false;
            }
            self.queue.push(entry.get_user_data());
            true
        }

        fn submit(&mut self) -> io::Result<usize> {
            if self.refusals > 0 {
                self.refusals -= 1;
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            let n = self.queue.len();
            self.kernel.append(&mut self.queue);
            Ok(n)
        }
    }

    fn nop(key: u64) -> squeue::Entry {
        opcode::Nop::new().build().user_data(key)
    }

    /// Ten entries into a queue of two, whose first early submit is
    /// refused: eight are held. Before the loop waits, `flush` gets every
    /// one of them to the kernel or the queue, in order, though the queue
    /// takes only two at a time; a flush that stopped at a full queue
    /// would leave six behind while the loop slept.
    #[test]
    fn every_held_entry_goes_in_before_the_wait() {
        let mut ring = FakeRing {
            capacity: 2,
            queue: Vec::new(),
            kernel: Vec::new(),
            refusals: 1,
        };
        let mut submissions = Submissions::default();
        for key in 0..10 {
            // SAFETY: a no-op entry points to nothing.
            unsafe { submissions.push(&mut ring, nop(key)) }.unwrap();
        }
        assert_eq!(submissions.held.len(), 8);
        assert_eq!(submissions.deferred, 1);
        assert!(submissions.flush(&mut ring).unwrap());
        assert!(submissions.held.is_empty());
        let mut seen = ring.kernel.clone();
        seen.extend(&ring.queue);
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    /// While the kernel keeps refusing, `flush` says so instead of
    /// pretending, and keeps the entries, in order, for the next try.
    #[test]
    fn a_refused_flush_says_so_and_keeps_the_entries() {
        let mut ring = FakeRing {
            capacity: 1,
            queue: Vec::new(),
            kernel: Vec::new(),
            refusals: 2,
        };
        let mut submissions = Submissions::default();
        for key in 0..3 {
            // SAFETY: a no-op entry points to nothing.
            unsafe { submissions.push(&mut ring, nop(key)) }.unwrap();
        }
        assert!(!submissions.flush(&mut ring).unwrap());
        assert_eq!(submissions.held.len(), 2);
        assert!(submissions.flush(&mut ring).unwrap());
        let mut seen = ring.kernel.clone();
        seen.extend(&ring.queue);
        assert_eq!(seen, vec![0, 1, 2]);
    }
}
