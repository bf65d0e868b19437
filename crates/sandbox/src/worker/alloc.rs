//! The JS heap cap: an allocator for QuickJS that refuses to grow past the cap and remembers that it did.
//!
//! QuickJS turns a refused allocation into an `out of memory` error, which job code can catch (sometimes it even
//! surfaces as a bare `null`). The flag set here stays set, so the run ends `killed` whatever the job does next, and
//! the interrupt handler reads it to stop the job at its next check. The worker keeps one runtime from run to run,
//! so the cap is set anew for each run ([`Meter::arm`]): what the runtime already holds plus the run's limit.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rquickjs::allocator::{Allocator, RustAllocator};

/// What a runtime's allocator holds, its cap, and whether it refused an allocation. Shared between the allocator
/// and the engine (one thread uses both; the atomics only make the sharing safe to express).
#[derive(Default)]
pub(crate) struct Meter {
    limit: AtomicUsize,
    used: AtomicUsize,
    exceeded: AtomicBool,
}

impl Meter {
    /// Caps the runtime at what it holds now plus `limit` bytes, for the run about to start.
    pub(crate) fn arm(&self, limit: usize) {
        let used = self.used.load(Ordering::Relaxed);
        self.limit.store(used.saturating_add(limit), Ordering::Relaxed);
    }

    /// Whether an allocation was refused: the run hit the cap (and the runtime must not be used again).
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// The bytes the runtime holds.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Counts the bytes QuickJS holds and refuses allocations beyond the meter's limit.
pub(crate) struct CappedAllocator {
    meter: Arc<Meter>,
}

impl CappedAllocator {
    /// An allocator that counts into `meter`, refuses to grow past its limit and then sets its flag for good.
    pub(crate) fn new(meter: Arc<Meter>) -> Self {
        CappedAllocator { meter }
    }

    fn refuse(&self) -> *mut u8 {
        self.meter.exceeded.store(true, Ordering::Relaxed);
        std::ptr::null_mut()
    }

    fn fits(&self, additional: usize) -> bool {
        let limit = self.meter.limit.load(Ordering::Relaxed);
        self.meter.used().checked_add(additional).is_some_and(|total| total <= limit)
    }

    fn add(&self, bytes: usize) {
        self.meter.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub(&self, bytes: usize) {
        let used = self.meter.used();
        self.meter.used.store(used.saturating_sub(bytes), Ordering::Relaxed);
    }
}

// SAFETY: every allocation is delegated to `RustAllocator`, which upholds the trait's contract; this wrapper only
// counts and refuses (returns null), which the contract allows.
unsafe impl Allocator for CappedAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.fits(size) {
            return self.refuse();
        }
        let ptr = RustAllocator.alloc(size);
        if ptr.is_null() {
            return self.refuse();
        }
        // SAFETY: `ptr` was just allocated by `RustAllocator`.
        self.add(unsafe { RustAllocator::usable_size(ptr) });
        ptr
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let Some(total) = count.checked_mul(size) else {
            return self.refuse();
        };
        if !self.fits(total) {
            return self.refuse();
        }
        let ptr = RustAllocator.calloc(count, size);
        if ptr.is_null() {
            if total == 0 {
                return ptr;
            }
            return self.refuse();
        }
        // SAFETY: `ptr` was just allocated by `RustAllocator`.
        self.add(unsafe { RustAllocator::usable_size(ptr) });
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: the caller guarantees `ptr` came from this allocator, i.e. from `RustAllocator`.
        unsafe {
            self.sub(RustAllocator::usable_size(ptr));
            RustAllocator.dealloc(ptr);
        }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.alloc(new_size);
        }
        if new_size == 0 {
            // SAFETY: as in `dealloc`.
            unsafe { self.dealloc(ptr) };
            return std::ptr::null_mut();
        }
        // SAFETY: the caller guarantees `ptr` came from this allocator.
        let old = unsafe { RustAllocator::usable_size(ptr) };
        if new_size > old && !self.fits(new_size - old) {
            return self.refuse();
        }
        // SAFETY: as above; on failure the old block stays valid and counted.
        let new_ptr = unsafe { RustAllocator.realloc(ptr, new_size) };
        if new_ptr.is_null() {
            return self.refuse();
        }
        // SAFETY: `new_ptr` was just returned by `RustAllocator`.
        let new = unsafe { RustAllocator::usable_size(new_ptr) };
        self.sub(old);
        self.add(new);
        new_ptr
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: the caller guarantees `ptr` came from this allocator.
        unsafe { RustAllocator::usable_size(ptr) }
    }
}
