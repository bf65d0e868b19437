//! The memory every QuickJS allocation of the worker comes from, and the snapshot that makes each run start fresh.
//!
//! The worker's JS runtime lives entirely in one fixed region of memory (the arena), so the state of the runtime is
//! the bytes of the region: once the world of a run (context, prelude, console, library) is built, those bytes are
//! copied aside, and after every run they are copied back. A run therefore starts from a byte-for-byte copy of a
//! context no job has touched, and everything it did (objects, atoms, shapes, queued jobs, garbage) is gone with the
//! copy, without a garbage collection or a context to free.
//!
//! The allocator keeps its own state (bump pointer, free lists, counters) at the start of the region, so the copy
//! restores it too. Blocks carry an 8-byte header with their size class; sizes are classes of 16-byte steps up to
//! 1 KiB, then four classes per doubling. Freed blocks go to their class's list; nothing is coalesced, which is
//! fine for memory that is thrown away after every run. The JS heap cap counts the bytes of live blocks; a refused
//! allocation sets a flag that stays set until the next restore (an out-of-memory error can be caught by job code,
//! the flag cannot).

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use rquickjs::qjs;

/// Size classes: 64 of 16-byte steps (16 … 1024 bytes), then four per doubling.
const CLASSES: usize = 256;
/// Bytes of the header before each block's memory.
const HEADER: usize = 8;
/// After a run that grew the arena more than this past the snapshot, the pages it used are given back to the OS.
const TRIM_SLACK: usize = 4 << 20;

/// The allocator's state, at the very start of the arena.
#[repr(C)]
struct Heap {
    /// The next never-used byte.
    bump: usize,
    /// The end of the arena.
    end: usize,
    /// Bytes of live blocks (headers included).
    live: usize,
    /// The most `live` may reach.
    limit: usize,
    /// The highest `bump` reached since the last restore.
    high_water: usize,
    /// The first free block of each class (0 when none).
    free: [usize; CLASSES],
}

/// Set when an allocation was refused; cleared by [`Arena::restore`]. Read by the interrupt handler.
static EXCEEDED: AtomicBool = AtomicBool::new(false);

/// Where the arena's [`Heap`] lives (set once, before the runtime exists).
static mut HEAP: *mut Heap = ptr::null_mut();

/// The worker's arena: its region, and the snapshot taken once the world was built.
pub(crate) struct Arena {
    base: *mut u8,
    snapshot: Vec<u8>,
    /// The live bytes of the snapshot's state (the world itself).
    world_live: usize,
}

impl Arena {
    /// Reserves `size` bytes of address space (pages are only backed once touched) and sets the allocator up in it.
    /// There is one arena per process.
    pub(crate) fn reserve(size: usize) -> Result<Arena, String> {
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "cannot reserve {} MiB for the JS heap: {}",
                size >> 20,
                std::io::Error::last_os_error()
            ));
        }
        let base = base.cast::<u8>();
        let start = base as usize;
        // The first block starts 8 bytes before a 16-byte boundary, so that memory handed out is 16-byte aligned.
        let first = (start + std::mem::size_of::<Heap>()).div_ceil(16) * 16 + 16 - HEADER;
        // SAFETY: the mapping is writable and large enough for the header; this is the only reference to it.
        unsafe {
            HEAP = base.cast::<Heap>();
            ptr::write(
                HEAP,
                Heap {
                    bump: first,
                    end: start + size,
                    live: 0,
                    limit: usize::MAX,
                    high_water: first,
                    free: [0; CLASSES],
                },
            );
        }
        Ok(Arena { base, snapshot: Vec::new(), world_live: 0 })
    }

    /// The allocation functions to create a QuickJS runtime with.
    pub(crate) fn malloc_functions() -> qjs::JSMallocFunctions {
        qjs::JSMallocFunctions {
            js_calloc: Some(js_calloc),
            js_malloc: Some(js_malloc),
            js_free: Some(js_free),
            js_realloc: Some(js_realloc),
            js_malloc_usable_size: Some(js_usable_size),
        }
    }

    /// Copies the arena's used part aside: every [`Arena::restore`] goes back to this state.
    pub(crate) fn take_snapshot(&mut self) {
        let heap = heap();
        let used = heap.bump - self.base as usize;
        // SAFETY: `[base, bump)` is inside the mapping and initialized (everything below `bump` was handed out).
        self.snapshot = unsafe { std::slice::from_raw_parts(self.base, used) }.to_vec();
        self.world_live = heap.live;
        heap.high_water = heap.bump;
    }

    /// The size of the snapshot, in bytes.
    pub(crate) fn snapshot_len(&self) -> usize {
        self.snapshot.len()
    }

    /// Caps the live bytes at the world's plus `limit`, for the run about to start.
    pub(crate) fn arm(&self, limit: usize) {
        heap().limit = self.world_live.saturating_add(limit);
    }

    /// Whether an allocation was refused since the last restore.
    pub(crate) fn exceeded() -> bool {
        EXCEEDED.load(Ordering::Relaxed)
    }

    /// Whether the last run grew the arena enough past the snapshot that restoring gives pages back to the OS.
    pub(crate) fn grew_much(&self) -> bool {
        heap().high_water > self.base as usize + self.snapshot.len() + TRIM_SLACK
    }

    /// Puts the arena back into the snapshot's state. Nothing that points into the arena may be used afterwards
    /// unless it existed when the snapshot was taken.
    pub(crate) fn restore(&mut self) {
        let high_water = heap().high_water;
        // SAFETY: the snapshot was copied from `[base, base + len)`, which is inside the mapping; no JS runs now.
        unsafe { ptr::copy_nonoverlapping(self.snapshot.as_ptr(), self.base, self.snapshot.len()) };
        let snapshot_end = self.base as usize + self.snapshot.len();
        if high_water > snapshot_end + TRIM_SLACK {
            // A run that used a lot of memory: give its pages back (they read as zeros when touched again).
            let page = 4096;
            let from = snapshot_end.div_ceil(page) * page;
            // SAFETY: `[from, high_water)` is inside the mapping and holds nothing the snapshot refers to.
            unsafe { libc::madvise(from as *mut c_void, high_water - from, libc::MADV_DONTNEED) };
        }
        heap().high_water = heap().bump;
        EXCEEDED.store(false, Ordering::Relaxed);
    }
}

fn heap() -> &'static mut Heap {
    // SAFETY: set by `Arena::reserve` before any allocation; one thread uses the arena.
    unsafe { &mut *HEAP }
}

/// The class of a block of `total` bytes (header included) and the block size of that class.
fn class_of(total: usize) -> Option<(usize, usize)> {
    if total <= 1024 {
        let class = total.max(16).div_ceil(16);
        return Some((class - 1, class * 16));
    }
    // Four classes per doubling above 1 KiB: 1280, 1536, 1792, 2048, 2560 …
    let bits = usize::BITS - (total - 1).leading_zeros(); // 2^(bits-1) < total <= 2^bits
    let base = 1usize << (bits - 1);
    let step = base / 4;
    let quarter = (total - base).div_ceil(step); // 1..=4
    let class = 63 + (bits as usize - 11) * 4 + quarter;
    (class < CLASSES).then_some((class, base + quarter * step))
}

/// The block size of a class.
fn class_size(class: usize) -> usize {
    if class < 64 {
        return (class + 1) * 16;
    }
    let doubling = (class - 64) / 4; // 0 for 1280 … 2048
    let quarter = (class - 64) % 4 + 1;
    let base = 1024usize << doubling;
    base + quarter * (base / 4)
}

fn refuse() -> *mut c_void {
    EXCEEDED.store(true, Ordering::Relaxed);
    ptr::null_mut()
}

unsafe extern "C" fn js_malloc(_opaque: *mut c_void, size: qjs::size_t) -> *mut c_void {
    let Some((class, total)) = usize::try_from(size).ok().and_then(|size| size.checked_add(HEADER)).and_then(class_of)
    else {
        return refuse();
    };
    let heap = heap();
    if heap.live + total > heap.limit {
        return refuse();
    }
    let block = if heap.free[class] != 0 {
        let block = heap.free[class];
        // SAFETY: a free block keeps the next free block of its class right after its header.
        heap.free[class] = unsafe { *((block + HEADER) as *const usize) };
        block
    } else {
        if total > heap.end - heap.bump {
            return refuse();
        }
        let block = heap.bump;
        heap.bump += total;
        heap.high_water = heap.high_water.max(heap.bump);
        block
    };
    // SAFETY: `block` is the start of a block of `total` bytes inside the arena.
    unsafe { *(block as *mut usize) = class };
    heap.live += total;
    (block + HEADER) as *mut c_void
}

unsafe extern "C" fn js_calloc(opaque: *mut c_void, count: qjs::size_t, size: qjs::size_t) -> *mut c_void {
    let Some(total) = count.checked_mul(size) else { return refuse() };
    // SAFETY: forwarded as is.
    let memory = unsafe { js_malloc(opaque, total) };
    if !memory.is_null() {
        // SAFETY: `memory` has at least `total` bytes.
        unsafe { ptr::write_bytes(memory.cast::<u8>(), 0, total as usize) };
    }
    memory
}

unsafe extern "C" fn js_free(_opaque: *mut c_void, memory: *mut c_void) {
    if memory.is_null() {
        return;
    }
    let block = memory as usize - HEADER;
    let heap = heap();
    // SAFETY: `memory` came from `js_malloc`, so its header holds its class.
    let class = unsafe { *(block as *const usize) };
    heap.live -= class_size(class);
    // SAFETY: the block's memory is ours again; its first word links it into its class's list.
    unsafe { *(memory as *mut usize) = heap.free[class] };
    heap.free[class] = block;
}

unsafe extern "C" fn js_usable_size(memory: *const c_void) -> qjs::size_t {
    if memory.is_null() {
        return 0;
    }
    // SAFETY: `memory` came from `js_malloc`, so its header holds its class.
    let class = unsafe { *((memory as usize - HEADER) as *const usize) };
    (class_size(class) - HEADER) as qjs::size_t
}

unsafe extern "C" fn js_realloc(opaque: *mut c_void, memory: *mut c_void, size: qjs::size_t) -> *mut c_void {
    if memory.is_null() {
        // SAFETY: forwarded as is.
        return unsafe { js_malloc(opaque, size) };
    }
    if size == 0 {
        // SAFETY: as above.
        unsafe { js_free(opaque, memory) };
        return ptr::null_mut();
    }
    // SAFETY: `memory` came from `js_malloc`.
    let usable = unsafe { js_usable_size(memory) };
    if size <= usable && size > usable / 2 {
        return memory;
    }
    // SAFETY: a new block, then the old one's bytes (as many as fit) and the old one freed.
    unsafe {
        let moved = js_malloc(opaque, size);
        if moved.is_null() {
            return moved;
        }
        ptr::copy_nonoverlapping(memory.cast::<u8>(), moved.cast::<u8>(), usable.min(size) as usize);
        js_free(opaque, memory);
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_size_and_round_up() {
        let mut previous = 0;
        for total in 1..200_000usize {
            let (class, size) = class_of(total).expect("a class");
            assert!(size >= total, "{total} → {size}");
            assert_eq!(class_size(class), size, "class {class}");
            assert!(size % 16 == 0);
            assert!(class >= previous);
            previous = class;
            if total > 1024 {
                assert!(size - total < size / 4 + 16, "{total} → {size} wastes too much");
            }
        }
        assert!(class_of(usize::MAX / 2).is_none());
    }
}
