//! The static (musl) build's allocator: dlmalloc, taking its memory from
//! one reserved range of addresses.
//!
//! Why dlmalloc: musl's own malloc maps and unmaps a few pages at a time,
//! about forty mmap/munmap calls in an uncontended run; dlmalloc takes
//! memory in larger pieces (0.86x the CPU of a whole run, bench/analysis.md,
//! "fifth round"). glibc's malloc already does, so the glibc build keeps it.
//!
//! Why one range: the guardian is forked while lockrun runs on, and every
//! page the two share is write-protected until one of them writes it;
//! lockrun then writes most of its heap again, one copy-on-write fault a
//! page. The guardian never touches the heap, so the guardian's fork marks
//! the range `MADV_DONTFORK` around the clone ([`crate::os::Unshared`]),
//! which needs the range known without reading /proc/self/maps
//! (bench/analysis.md, "sixth round").

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Addresses reserved (`PROT_NONE`: no memory, no commit charge) on the
/// first request: some hundred times what a run uses, and small beside an
/// address-space limit (`ulimit -v`), which counts reserved addresses too.
/// Should it run out, requests go to plain mmap, which is only slower at
/// fork.
const RESERVED: usize = 64 << 20;
/// dlmalloc grows by segments of 64 KiB or more; one this large (a single
/// large allocation) comes from plain mmap, which dlmalloc may give back,
/// and not from the range, which it never does.
const LARGE: usize = 256 * 1024;
/// The flags of a piece from plain mmap (dlmalloc keeps them shifted left
/// by one, and hands them back to `can_release_part`): releasable, and
/// never merged with the range's pieces (flags 0), whose flags differ.
const PLAIN: u32 = 1 << 1;

/// Start of the reserved range (0: not reserved yet, or reserving failed).
static BASE: AtomicUsize = AtomicUsize::new(0);
/// How much of the range is handed out (readable and writable).
static USED: AtomicUsize = AtomicUsize::new(0);
/// Whether the reservation was tried (it is tried once).
static TRIED: AtomicBool = AtomicBool::new(false);

/// dlmalloc's source of memory: the reserved range, plain mmap beyond it.
struct Pages;

impl Pages {
    fn reserve() -> usize {
        if !TRIED.swap(true, Ordering::Relaxed) {
            // SAFETY: a fresh anonymous mapping at an address the kernel picks.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    RESERVED,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if base != libc::MAP_FAILED {
                BASE.store(base as usize, Ordering::Relaxed);
            }
        }
        BASE.load(Ordering::Relaxed)
    }

    fn in_range(ptr: *mut u8, size: usize) -> bool {
        let base = BASE.load(Ordering::Relaxed);
        let start = ptr as usize;
        base != 0 && start < base + RESERVED && start.saturating_add(size) > base
    }
}

/// Plain anonymous memory, as dlmalloc's default source maps it.
fn map(size: usize) -> *mut u8 {
    // SAFETY: a fresh anonymous mapping at an address the kernel picks.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        addr.cast()
    }
}

// SAFETY: every piece handed out is fresh, zeroed, page-aligned memory of
// the size reported, owned by dlmalloc until it gives it back.
unsafe impl dlmalloc::Allocator for Pages {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        let size = size.next_multiple_of(crate::os::page_size());
        let base = if size < LARGE { Self::reserve() } else { 0 };
        let used = USED.load(Ordering::Relaxed);
        if base != 0 && used + size <= RESERVED {
            let piece = (base + used) as *mut libc::c_void;
            // SAFETY: inside the reservation, beyond every piece handed out.
            if unsafe { libc::mprotect(piece, size, libc::PROT_READ | libc::PROT_WRITE) } == 0 {
                // Callers hold the allocator's lock: no other thread moves USED.
                USED.store(used + size, Ordering::Relaxed);
                return (piece.cast(), size, 0);
            }
        }
        let ptr = map(size);
        (ptr, if ptr.is_null() { 0 } else { size }, PLAIN)
    }

    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        // dlmalloc copies instead.
        std::ptr::null_mut()
    }

    // dlmalloc releases only segments whose flags say so (`PLAIN`); the
    // range check is a second guard: the range is never given back.
    fn free_part(&self, ptr: *mut u8, old: usize, new: usize) -> bool {
        // SAFETY: the tail of a plain mapping dlmalloc no longer uses.
        !Self::in_range(ptr, old) && unsafe { libc::munmap(ptr.add(new).cast(), old - new) } == 0
    }

    fn free(&self, ptr: *mut u8, size: usize) -> bool {
        // SAFETY: a plain mapping dlmalloc no longer uses.
        !Self::in_range(ptr, size) && unsafe { libc::munmap(ptr.cast(), size) } == 0
    }

    fn can_release_part(&self, flags: u32) -> bool {
        flags & (PLAIN >> 1) != 0
    }

    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        crate::os::page_size()
    }
}

/// The global allocator of the static build (installed in `main.rs`).
pub struct Heap;

static DLMALLOC: Mutex<dlmalloc::Dlmalloc<Pages>> =
    Mutex::new(dlmalloc::Dlmalloc::new_with_allocator(Pages));

fn with<T>(f: impl FnOnce(&mut dlmalloc::Dlmalloc<Pages>) -> T) -> T {
    // Poisoning needs a panic that unwinds; lockrun aborts instead.
    let mut heap = DLMALLOC
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut heap)
}

// SAFETY: dlmalloc's contract is GlobalAlloc's; the lock serialises threads.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as GlobalAlloc::alloc.
        with(|heap| unsafe { heap.malloc(layout.size(), layout.align()) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as GlobalAlloc::dealloc.
        with(|heap| unsafe { heap.free(ptr, layout.size(), layout.align()) });
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as GlobalAlloc::alloc_zeroed.
        with(|heap| unsafe { heap.calloc(layout.size(), layout.align()) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as GlobalAlloc::realloc.
        with(|heap| unsafe { heap.realloc(ptr, layout.size(), layout.align(), new_size) })
    }
}

/// The reserved range, start and length, once reserved.
pub(crate) fn reserved() -> Option<(usize, usize)> {
    let base = BASE.load(Ordering::Relaxed);
    (base != 0).then_some((base, RESERVED))
}
