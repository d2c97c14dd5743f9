//! The global allocator of the static (musl) build: dlmalloc behind a lock of one flag.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use dlmalloc::Dlmalloc;

/// dlmalloc behind a lock of one atomic flag. The crate's own global wrapper takes a
/// pthread mutex around every call, two calls into the C library each time: sampled over
/// 300 starts, the lock took three times the user time of the allocations it guarded,
/// which are thousands per start (the argument parser's above all). crabcan allocates from
/// one thread almost always, so the flag is free; another thread, where one exists, spins
/// a little while an allocation is in progress, then yields its CPU until the flag is free
/// (the holder may be preempted).
///
/// Like the wrapper it replaces, it does not guard against a fork while another thread
/// holds it: crabcan forks and clones only when single-threaded (`ensure_single_threaded`).
pub struct FlagLocked {
    busy: AtomicBool,
    heap: UnsafeCell<Dlmalloc>,
}

// SAFETY: the heap is only reached while `busy` is held (see `with`).
unsafe impl Sync for FlagLocked {}

impl FlagLocked {
    /// An allocator with an empty heap.
    pub const fn new() -> Self {
        FlagLocked {
            busy: AtomicBool::new(false),
            heap: UnsafeCell::new(Dlmalloc::new()),
        }
    }

    /// Runs `f` on the heap with the flag held (released however `f` ends).
    #[inline]
    fn with<T>(&self, f: impl FnOnce(&mut Dlmalloc) -> T) -> T {
        let mut tries = 0u32;
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            tries = tries.saturating_add(1);
            if tries < 64 {
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let _held = Held(&self.busy);
        // SAFETY: the flag, just taken, gives this call the only reference to the heap
        // until `_held` releases it; `f` (a dlmalloc call) does not allocate through the
        // global allocator.
        f(unsafe { &mut *self.heap.get() })
    }
}

/// Releases the flag when dropped.
struct Held<'a>(&'a AtomicBool);

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

// SAFETY: each method forwards to dlmalloc's, which meet GlobalAlloc's contract for the
// layouts given, one at a time (`with`).
unsafe impl GlobalAlloc for FlagLocked {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        self.with(|h| unsafe { h.malloc(layout.size(), layout.align()) })
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: see the impl; `ptr` came from this allocator with `layout`.
        self.with(|h| unsafe { h.free(ptr, layout.size(), layout.align()) })
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        self.with(|h| unsafe { h.calloc(layout.size(), layout.align()) })
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl; `ptr` came from this allocator with `layout`.
        self.with(|h| unsafe { h.realloc(ptr, layout.size(), layout.align(), new_size) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is written into an allocation stays there until it is freed: through a grow
    /// (realloc) too, and a zeroed allocation is zero.
    #[test]
    fn allocations_keep_their_contents() {
        let a = FlagLocked::new();
        // SAFETY: every pointer is used within its layout and freed once with it.
        unsafe {
            let small = Layout::from_size_align(24, 8).unwrap();
            let p = a.alloc(small);
            assert!(!p.is_null());
            p.copy_from_nonoverlapping(b"twenty-four bytes long!!".as_ptr(), 24);
            let q = a.realloc(p, small, 4096);
            assert!(!q.is_null());
            assert_eq!(
                std::slice::from_raw_parts(q, 24),
                b"twenty-four bytes long!!"
            );
            a.dealloc(q, Layout::from_size_align(4096, 8).unwrap());
            let big = Layout::from_size_align(1 << 20, 4096).unwrap();
            let z = a.alloc_zeroed(big);
            assert!(!z.is_null() && z as usize % 4096 == 0);
            assert!(
                std::slice::from_raw_parts(z, 1 << 20)
                    .iter()
                    .all(|&b| b == 0)
            );
            a.dealloc(z, big);
        }
    }

    /// Threads allocating at once from one heap never get overlapping memory or wreck the
    /// heap: each fills its blocks with its own byte and finds it there before freeing.
    /// Without the flag, dlmalloc's free lists race and this fails (or crashes).
    #[test]
    fn threads_allocating_at_once_do_not_share_memory() {
        static HEAP: FlagLocked = FlagLocked::new();
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut held: Vec<(*mut u8, Layout)> = Vec::new();
                    for i in 0..20_000usize {
                        let layout =
                            Layout::from_size_align(16 + (i * 7 + t as usize) % 300, 8).unwrap();
                        // SAFETY: each block is written within its layout and freed once.
                        unsafe {
                            let p = HEAP.alloc(layout);
                            assert!(!p.is_null());
                            p.write_bytes(t + 1, layout.size());
                            held.push((p, layout));
                            if held.len() > 64 {
                                let (p, l) = held.swap_remove(i % held.len());
                                let mine = std::slice::from_raw_parts(p, l.size());
                                assert!(mine.iter().all(|&b| b == t + 1), "block overwritten");
                                HEAP.dealloc(p, l);
                            }
                        }
                    }
                    for (p, l) in held {
                        // SAFETY: as above.
                        unsafe { HEAP.dealloc(p, l) };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("an allocating thread failed");
        }
    }
}
