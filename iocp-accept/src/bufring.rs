//! The provided buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19) the
//! multishot loop receives into: buffers that belong to the loop, not to a
//! connection, taken by the kernel only when data arrives.

use std::alloc::Layout;
use std::sync::atomic::{AtomicU16, Ordering};

use anyhow::Context;
use io_uring::{IoUring, cqueue};

/// The buffer group the receives take from.
pub const BGID: u16 = 0;
/// The size of each provided buffer.
pub const BUF_SIZE: usize = 4096;

/// The default number of provided buffers: one for every eight connections
/// the server may hold, a power of two from 256 to 4096 (1 to 16 MiB).
/// Idle connections hold none, so this is sized for a burst: when more
/// connections have data at the same instant than there are buffers, the
/// receives past the last buffer end with ENOBUFS and are re-armed once the
/// batch has given its buffers back. That costs a re-arm, never a byte.
pub fn buffers_for(conns: usize) -> u16 {
    let wanted = (conns / 8).clamp(256, 4096).next_power_of_two();
    u16::try_from(wanted).expect("at most 4096")
}

/// The provided buffer ring: `entries` buffers of [`BUF_SIZE`] bytes in one
/// allocation, and the ring of descriptors the kernel takes them from.
/// Registered once; a buffer goes back (the tail moves on) as soon as the
/// lines in it are framed.
///
/// Both are raw allocations, not a `Box` or `Vec`: the kernel writes into
/// the buffers (and reads the descriptors, and the tail inside the first
/// one) while the program runs, at times the program does not see, so no
/// Rust reference may cover them whole. The one reference ever made is
/// [`buffer`](Self::buffer)'s, to the one buffer a completion has handed
/// over, which only a [`Taken`] names.
pub struct BufRing {
    ring: *mut BufDesc,
    ring_layout: Layout,
    buffers: *mut u8,
    buffers_layout: Layout,
    entries: u16,
    tail: u16,
}

/// One descriptor of the ring: the kernel's `struct io_uring_buf`. In the
/// first descriptor, `resv` is the ring's tail, which the kernel reads at
/// any time; so fields are written one by one through raw pointers, as
/// liburing's `io_uring_buf_ring_add` does, never through a reference to a
/// whole descriptor.
#[repr(C)]
struct BufDesc {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// A buffer the kernel has handed over in a receive completion, until it
/// is given back: [`BufRing::push`] consumes it, so a buffer cannot be read
/// after it went back, nor go back twice. Neither `Clone` nor `Copy`.
pub struct Taken {
    bid: u16,
}

impl BufRing {
    /// Allocates, touches and registers a ring of `entries` buffers.
    pub fn register(uring: &IoUring, entries: u16) -> anyhow::Result<BufRing> {
        // The ring must be page-aligned; the buffers are too, so that no
        // buffer straddles a page more than it must.
        let ring_layout =
            Layout::from_size_align(usize::from(entries) * size_of::<BufDesc>(), 4096)
                .context("buffer ring layout")?;
        let buffers_layout = Layout::from_size_align(usize::from(entries) * BUF_SIZE, 4096)
            .context("buffers layout")?;
        // SAFETY: alloc_zeroed's caller guarantees a layout of non-zero
        // size: both are `entries` (at least 1) times a non-zero size.
        let (ring, buffers) = unsafe {
            (
                std::alloc::alloc_zeroed(ring_layout).cast::<BufDesc>(),
                std::alloc::alloc_zeroed(buffers_layout),
            )
        };
        if ring.is_null() || buffers.is_null() {
            anyhow::bail!("cannot allocate the buffer ring");
        }
        // Every page written now, so that the buffers count in the
        // server's baseline memory, not against the first connections.
        for page in (0..buffers_layout.size()).step_by(4096) {
            // SAFETY: `page` is within the allocation just made, which
            // nothing else knows of yet.
            unsafe { buffers.add(page).write(1) };
        }
        let mut this = BufRing {
            ring,
            ring_layout,
            buffers,
            buffers_layout,
            entries,
            tail: 0,
        };
        for bid in 0..entries {
            this.push(Taken { bid });
        }
        this.publish();
        // SAFETY: register_buf_ring's caller guarantees that the ring
        // memory is page-aligned, `entries` descriptors long, and stays
        // valid until unregistered: it is unregistered in `Server`'s drop,
        // before this is freed.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, entries, BGID, 0)
        }
        .context("registering the buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19)")?;
        Ok(this)
    }

    /// The buffer a receive completion's `flags` name, now the program's.
    ///
    /// # Safety
    ///
    /// `flags` are those of a receive completion from this ring, just
    /// reaped, and taken once: the kernel has handed that buffer over and
    /// will not write it again until it is pushed back.
    pub unsafe fn take(&self, flags: u32) -> Option<Taken> {
        let bid = cqueue::buffer_select(flags)?;
        assert!(bid < self.entries, "not a buffer of the ring");
        Some(Taken { bid })
    }

    /// The `len` bytes the kernel received into `taken`. Borrowing both,
    /// the slice ends before [`push`](Self::push) can give it back.
    pub fn buffer(&self, taken: &Taken, len: usize) -> &[u8] {
        assert!(len <= BUF_SIZE, "more than a buffer");
        // SAFETY: from_raw_parts' caller guarantees that the bytes are in
        // one allocation, initialised, and not written while the slice
        // lives. They are inside the buffers' allocation (`bid` was checked
        // when taken), zeroed at start and since written by the kernel;
        // and the kernel writes a buffer only after it is pushed back,
        // which consumes `taken`, so not while this borrow lasts.
        unsafe {
            std::slice::from_raw_parts(self.buffers.add(usize::from(taken.bid) * BUF_SIZE), len)
        }
    }

    /// Queues a buffer for the kernel again (seen once [`publish`]ed).
    pub fn push(&mut self, taken: Taken) {
        let bid = taken.bid;
        let slot = usize::from(self.tail & (self.entries - 1));
        // An address only: no reference to the buffer is made.
        let addr = self.buffers.wrapping_add(usize::from(bid) * BUF_SIZE) as u64;
        // SAFETY: the three fields are written through raw pointers, and
        // only they: `resv`, which in slot 0 is the tail the kernel reads
        // at any time, is not touched, and no reference covers it. `slot`
        // is below `entries`, inside the ring's allocation; the kernel
        // reads a descriptor only once the published tail has passed it,
        // which it has not yet.
        unsafe {
            let desc = self.ring.add(slot);
            (&raw mut (*desc).addr).write(addr);
            (&raw mut (*desc).len).write(BUF_SIZE as u32);
            (&raw mut (*desc).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the pushed buffers visible to the kernel.
    pub fn publish(&self) {
        // SAFETY: a shared reference to an atomic needs a valid, aligned
        // place that is only accessed atomically: the tail is the first
        // descriptor's `resv` (valid, 2-byte aligned), which `push` never
        // writes, and the kernel only reads it, with acquire ordering.
        let tail = unsafe { &*(&raw const (*self.ring).resv).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: dealloc's caller guarantees the pointers came from alloc
        // with these layouts (in `register`) and are no longer used. The
        // ring was unregistered in `Server`'s drop, before this field's,
        // so no receive can pick a buffer from it any more; and every
        // receive's copy into a buffer runs in this thread (task work, run
        // while it is inside io_uring_enter), so none is half done.
        unsafe {
            std::alloc::dealloc(self.ring.cast(), self.ring_layout);
            std::alloc::dealloc(self.buffers, self.buffers_layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A ring of `entries` buffers allocated as `register` allocates them,
    /// but not registered: no system call, so the test needs no io_uring
    /// (and could run under Miri). Freed by `BufRing`'s drop.
    fn unregistered(entries: u16) -> BufRing {
        let ring_layout =
            Layout::from_size_align(usize::from(entries) * size_of::<BufDesc>(), 4096).unwrap();
        let buffers_layout =
            Layout::from_size_align(usize::from(entries) * BUF_SIZE, 4096).unwrap();
        // SAFETY: both layouts have a non-zero size.
        let (ring, buffers) = unsafe {
            (
                std::alloc::alloc_zeroed(ring_layout).cast::<BufDesc>(),
                std::alloc::alloc_zeroed(buffers_layout),
            )
        };
        assert!(!ring.is_null() && !buffers.is_null());
        BufRing {
            ring,
            ring_layout,
            buffers,
            buffers_layout,
            entries,
            tail: 0,
        }
    }

    /// Descriptor `slot` as the kernel reads it: address, length, id.
    fn desc(ring: &BufRing, slot: usize) -> (u64, u32, u16) {
        assert!(slot < usize::from(ring.entries));
        // SAFETY: `slot` is inside the ring's allocation (checked above);
        // the fields are read through raw pointers, as `push` writes them.
        unsafe {
            let d = ring.ring.add(slot);
            (
                (&raw const (*d).addr).read(),
                (&raw const (*d).len).read(),
                (&raw const (*d).bid).read(),
            )
        }
    }

    /// The tail as the kernel reads it: the first descriptor's `resv`.
    fn published(ring: &BufRing) -> u16 {
        // SAFETY: as in `publish`: the first descriptor's `resv`, valid,
        // aligned, and only ever accessed atomically.
        unsafe { &*(&raw const (*ring.ring).resv).cast::<AtomicU16>() }.load(Ordering::Acquire)
    }

    /// Buffers taken and given back, out of order, for more than 65 536
    /// pushes, so that the tail wraps past `u16::MAX` as well as around the
    /// ring many times. Each push fills the slot the tail names with the
    /// buffer's address, length and id, and never the tail itself, which
    /// lives in slot 0's `resv`: what the kernel reads there changes only
    /// when `publish` stores it, and then it is the count pushed, wrapped.
    #[test]
    fn push_and_publish_across_the_wrap() {
        const ENTRIES: u16 = 8;
        let mut ring = unregistered(ENTRIES);
        for bid in 0..ENTRIES {
            ring.push(Taken { bid });
        }
        ring.publish();
        assert_eq!(published(&ring), ENTRIES);
        let base = ring.buffers as u64;
        let mut pushed: u32 = u32::from(ENTRIES);
        // Back in a different order each round, as receives finish.
        for round in 0u32..9000 {
            for i in 0..ENTRIES {
                let bid = (i * 3 + round as u16) % ENTRIES;
                let taken = Taken { bid };
                assert_eq!(
                    ring.buffer(&taken, 16).as_ptr() as u64,
                    base + u64::from(bid) * BUF_SIZE as u64
                );
                let before = published(&ring);
                let slot = usize::from(ring.tail & (ENTRIES - 1));
                ring.push(taken);
                pushed += 1;
                assert_eq!(
                    desc(&ring, slot),
                    (
                        base + u64::from(bid) * BUF_SIZE as u64,
                        BUF_SIZE as u32,
                        bid
                    )
                );
                assert_eq!(published(&ring), before, "a push moved the published tail");
                if pushed % 3 == 0 {
                    ring.publish();
                    assert_eq!(published(&ring), pushed as u16);
                }
            }
        }
        assert!(pushed > 65_536, "the tail never wrapped");
    }

    /// The kernel reads the tail whenever it likes. A thread standing in
    /// for it reads slot 0's `resv` while buffers are pushed (slot 0
    /// among them) and published every fourth push: every value it sees
    /// is one that was published, a multiple of four. Natively this shows
    /// only that no push writes the tail. Under Miri's Stacked Borrows, a
    /// push that handed a `&mut` over a whole descriptor to a method (as
    /// io-uring's `BufRingEntry` setters take one) would claim the tail's
    /// bytes for the call, and a read landing then could be reported; a
    /// chance, not a certainty, as the reads and calls interleave.
    #[test]
    fn the_tail_read_meanwhile_is_only_ever_a_published_one() {
        /// The tail's address, for the reading thread.
        struct Tail(*const AtomicU16);
        // SAFETY: the tail is only accessed atomically, from any thread.
        unsafe impl Send for Tail {}

        const ENTRIES: u16 = 4;
        let mut ring = unregistered(ENTRIES);
        for bid in 0..ENTRIES {
            ring.push(Taken { bid });
        }
        ring.publish();
        // SAFETY: an address only, of a field inside the ring's allocation.
        let tail = Tail(unsafe { &raw const (*ring.ring).resv }.cast::<AtomicU16>());
        let (reading, done) = (AtomicBool::new(false), AtomicBool::new(false));
        std::thread::scope(|s| {
            let (reading, done) = (&reading, &done);
            s.spawn(move || {
                let tail = tail;
                loop {
                    // SAFETY: the ring outlives this scope; the tail is
                    // only accessed atomically.
                    let t = unsafe { &*tail.0 }.load(Ordering::Acquire);
                    assert_eq!(t % 4, 0, "a tail that was never published: {t}");
                    reading.store(true, Ordering::Release);
                    if done.load(Ordering::Acquire) {
                        break;
                    }
                }
            });
            // The pushes begin once the reader reads.
            while !reading.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            for i in 0..20_000u32 {
                ring.push(Taken {
                    bid: (i % u32::from(ENTRIES)) as u16,
                });
                if ring.tail % 4 == 0 {
                    ring.publish();
                }
            }
            done.store(true, Ordering::Release);
        });
        assert_eq!(published(&ring), ring.tail);
    }
}
