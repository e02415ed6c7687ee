//! The global allocator of Facade's binaries: mimalloc (see `src/main.rs` for why).

/// mimalloc as the global allocator, asked for an aligned block only when the alignment is
/// above what every mimalloc block has. Written here because the `mimalloc` crate's allocator
/// always calls `mi_malloc_aligned`, whose generic path (every block above 1 KiB, or when
/// the size class has no free block at hand) over-allocates unless the block size is a power
/// of two: about 700 such calls per home query (docs/benchmarks-history.md §18).
pub struct Mimalloc;

/// The alignment of every block `mi_malloc` returns that is at least this large
/// (`MI_MAX_ALIGN_SIZE`; an 8-byte block is aligned to 8 only).
const MI_ALIGN: usize = 16;

/// Whether a plain mimalloc block of `size` bytes has alignment `align` (the rule std's
/// `System` uses).
#[inline(always)]
fn plain(align: usize, size: usize) -> bool {
    align <= MI_ALIGN && align <= size
}

// SAFETY: each method passes the layout's size to mimalloc and asks for its alignment
// whenever plain mimalloc blocks do not already have it; blocks are freed by `mi_free`,
// which takes any block mimalloc made. With `tune_for_server` (and loading QuickJS bytecode in
// `scripts::engine::load`), the only unsafe code in Facade:
// an allocator cannot be written, nor its options set, without it.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        // SAFETY: as the trait requires; mimalloc accepts any size.
        unsafe {
            if plain(layout.align(), layout.size()) {
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
            if plain(layout.align(), layout.size()) {
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
            if plain(layout.align(), new_size) {
                mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

/// How long mimalloc keeps a freed page before giving it back to the system, in a server:
/// 100 ms instead of mimalloc v3's 1,000. Under load, pages freed within the delay are still
/// counted while new ones are taken: peak RSS rose in bursts of up to ~10 MiB over the steady
/// level (docs/benchmarks-history.md §21). 0 (at once) kept the peak lowest but cost ~30 µs more
/// kernel time per home query; 100 ms costs a few.
const SERVER_PURGE_DELAY_MS: std::ffi::c_long = 100;

/// `mi_option_purge_delay`'s place in mimalloc v3's option enum (`mimalloc.h`), which
/// libmimalloc-sys names no constant for; a test checks it against the option's default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the allocator's options for `facade serve`, unless the operator set
/// `MIMALLOC_PURGE_DELAY` (mimalloc reads it itself).
pub fn tune_for_server() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets an option by its index, a plain store mimalloc reads when it purges.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, SERVER_PURGE_DELAY_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    /// Index 15 is the purge delay: its value is mimalloc's default of 1,000 ms, or ours once
    /// a server in this process set it (its neighbours default to 1 and 0).
    #[test]
    #[allow(unsafe_code)]
    fn option_fifteen_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            eprintln!("skipped: MIMALLOC_PURGE_DELAY is set, so the option holds its value");
            return;
        }
        // SAFETY: reads an option by its index.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert!(before == 1000 || before == SERVER_PURGE_DELAY_MS, "option 15 is {before}");
        tune_for_server();
        // SAFETY: as above.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, SERVER_PURGE_DELAY_MS);
    }

    /// Blocks of every alignment come back aligned, zeroed where asked, and keep their bytes
    /// when they grow or shrink (a block above 1 KiB too, where the aligned path over-allocated).
    #[test]
    #[allow(unsafe_code)]
    fn blocks_are_aligned_and_keep_their_contents() {
        let a = Mimalloc;
        for align in [1, 8, 16, 32, 128, 4096] {
            for size in [1, 24, 100, 1500, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; each block is used within its size and freed once
                // with the layout it was made with (realloc's new layout keeps the alignment).
                unsafe {
                    let z = a.alloc_zeroed(layout);
                    assert!(!z.is_null() && (z as usize).is_multiple_of(align), "{size} {align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);
                    let p = a.alloc(layout);
                    assert!(!p.is_null() && (p as usize).is_multiple_of(align), "{size} {align}");
                    for i in 0..size {
                        *p.add(i) = i as u8;
                    }
                    let bigger = a.realloc(p, layout, size * 3);
                    assert!(!bigger.is_null() && (bigger as usize).is_multiple_of(align));
                    assert!((0..size).all(|i| *bigger.add(i) == i as u8));
                    let smaller =
                        a.realloc(bigger, Layout::from_size_align(size * 3, align).unwrap(), size / 2 + 1);
                    assert!(!smaller.is_null() && (smaller as usize).is_multiple_of(align));
                    assert!((0..size / 2 + 1).all(|i| *smaller.add(i) == i as u8));
                    a.dealloc(smaller, Layout::from_size_align(size / 2 + 1, align).unwrap());
                }
            }
        }
    }
}
