//! A bound on the memory a plan's template may use.
//!
//! minijinja bounds a template's work (its fuel), not its memory: a loop that doubles a string
//! thirty times asks for gigabytes in a few steps. The binary counts what it allocates
//! (`Counting`, its global allocator), and while a template renders (`bounded`) an allocation
//! past the bound ends the process with a clear error instead of letting the machine run out
//! of memory. Where `Counting` is not the allocator (a test binary), nothing is bounded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// How much more a template may allocate while it renders.
pub const TEMPLATE_MEMORY: usize = 512 * 1024 * 1024;

/// Bytes allocated and not freed, by every thread.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// While a template renders: the most `LIVE` may reach (0: no bound).
static LIMIT: AtomicUsize = AtomicUsize::new(0);

/// The system's allocator, counting what is live, and enforcing `LIMIT`.
pub struct Counting;

const OVER: &[u8] = b"error: the plan's template would use more than 512 MiB of memory (a loop \
that keeps growing a string?); nothing was changed\n";

// SAFETY: every call is passed to the system allocator as it is; the counter only watches.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size();
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        let limit = LIMIT.load(Ordering::Relaxed);
        if limit != 0 && live > limit {
            // Nothing that allocates may run here: the message is written as it is, and the
            // process ends at once (`_exit` runs no handler that could allocate).
            let _ = rustix::io::write(rustix::stdio::stderr(), OVER);
            // SAFETY: `_exit` ends the process; nothing after it runs.
            unsafe { libc::_exit(1) }
        }
        // SAFETY: as the caller's contract with `alloc`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as the caller's contract with `dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old {
            let grown = new_size - old;
            let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
            let limit = LIMIT.load(Ordering::Relaxed);
            if limit != 0 && live > limit {
                let _ = rustix::io::write(rustix::stdio::stderr(), OVER);
                // SAFETY: as in `alloc`.
                unsafe { libc::_exit(1) }
            }
        } else {
            LIVE.fetch_sub(old - new_size, Ordering::Relaxed);
        }
        // SAFETY: as the caller's contract with `realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` (a template rendering) with at most `TEMPLATE_MEMORY` more allocated than before.
pub fn bounded<T>(f: impl FnOnce() -> T) -> T {
    let before = LIVE.load(Ordering::Relaxed);
    LIMIT.store(before.saturating_add(TEMPLATE_MEMORY), Ordering::Relaxed);
    let result = f();
    LIMIT.store(0, Ordering::Relaxed);
    result
}
