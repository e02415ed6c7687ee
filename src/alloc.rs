//! The global allocator of Facade's binaries: mimalloc (see `src/main.rs` for why).

/// mimalloc as the global allocator, asked for an aligned block only when the alignment is
/// above what every mimalloc block has. Written here because the `mimalloc` crate's allocator
/// always calls `mi_malloc_aligned`, whose generic path (every block above 1 KiB, or when
/// the size class has no free block at hand) over-allocates unless the block size is a power
/// of two: about 700 such calls per home query (docs/BENCHMARKS.md §17).
pub struct Mimalloc;

/// The alignment of every block `mi_malloc` returns (`MI_MAX_ALIGN_SIZE`).
const MI_ALIGN: usize = 16;

// SAFETY: each method passes the layout's size to mimalloc and asks for its alignment
// whenever plain mimalloc blocks do not already have it; blocks are freed by `mi_free`,
// which takes any block mimalloc made. The only unsafe code in Facade: an allocator cannot be
// written without it.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        // SAFETY: as the trait requires; mimalloc accepts any size.
        unsafe {
            if layout.align() <= MI_ALIGN {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
        // SAFETY: as above.
        unsafe {
            if layout.align() <= MI_ALIGN {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe {
            if layout.align() <= MI_ALIGN {
                mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}
