//! The JS heap cap: an allocator for QuickJS that refuses to grow past the cap and remembers that it did.
//!
//! QuickJS turns a refused allocation into an `out of memory` error, which job code can catch (sometimes it even
//! surfaces as a bare `null`). The flag set here stays set, so the run ends `killed` whatever the job does next, and
//! the interrupt handler reads it to stop the job at its next check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rquickjs::allocator::{Allocator, RustAllocator};

/// Counts the bytes QuickJS holds and refuses allocations beyond `limit`.
pub(crate) struct CappedAllocator {
    limit: usize,
    used: usize,
    exceeded: Arc<AtomicBool>,
}

impl CappedAllocator {
    /// An allocator capped at `limit` bytes that sets `exceeded` (for good) when it refuses an allocation.
    pub(crate) fn new(limit: usize, exceeded: Arc<AtomicBool>) -> Self {
        CappedAllocator { limit, used: 0, exceeded }
    }

    fn refuse(&self) -> *mut u8 {
        self.exceeded.store(true, Ordering::SeqCst);
        std::ptr::null_mut()
    }

    fn fits(&self, additional: usize) -> bool {
        self.used.checked_add(additional).is_some_and(|total| total <= self.limit)
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
        self.used += unsafe { RustAllocator::usable_size(ptr) };
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
        self.used += unsafe { RustAllocator::usable_size(ptr) };
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: the caller guarantees `ptr` came from this allocator, i.e. from `RustAllocator`.
        unsafe {
            self.used = self.used.saturating_sub(RustAllocator::usable_size(ptr));
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
        self.used = self.used.saturating_sub(old) + new;
        new_ptr
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: the caller guarantees `ptr` came from this allocator.
        unsafe { RustAllocator::usable_size(ptr) }
    }
}
