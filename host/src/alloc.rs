//! The binary's allocator: the system allocator, with transparent huge
//! pages asked for on large blocks.
//!
//! Why: a cold start spends a large part of its graph load faulting in
//! weights page by page: MiniLM's 90 MB of tensors, then as much again in
//! the packed copies a back-end makes, is some 45 000 faults of 4 KiB.
//! Linux's transparent huge pages fault 2 MiB at a time, and most kernels
//! (this one included) offer them only to memory that asks
//! (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`). glibc asks
//! only under `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, which must be set
//! before the process starts; this wrapper asks for each block of 4 MiB or
//! more instead. Measured on MiniLM's tract form: the graph load drops from
//! about 140 to 115 ms (`bench/coldstart.sh`).
//!
//! Blocks that large are mapped by glibc on their own (its mmap threshold
//! is at most 32 MiB, and [`crate::nn::forms::with_lean_heap`] holds it at
//! 512 KiB while a graph loads), so the advice covers fresh, untouched
//! pages. Where it cannot apply (an older kernel, THP off) `madvise` fails
//! and nothing changes; the advice never changes what memory holds. Only
//! whole 2 MiB-aligned pages inside a block are advised, so no memory
//! outside it is touched.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are advised.
const LARGE: usize = 4 << 20;
/// The huge page size on x86-64 and arm64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// [`System`], plus `madvise(MADV_HUGEPAGE)` on blocks of 4 MiB or more.
pub struct LargePages;

impl LargePages {
    fn advise(ptr: *mut u8, size: usize) {
        #[cfg(target_os = "linux")]
        if !ptr.is_null() && size >= LARGE {
            let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
            let end = (ptr as usize + size) & !(HUGE_PAGE - 1);
            if end > start {
                #[allow(unsafe_code, reason = "madvise is a plain libc call")]
                // SAFETY: the range lies inside the block just allocated;
                // MADV_HUGEPAGE is advice and never changes its contents.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (ptr, size);
    }
}

#[allow(unsafe_code, reason = "a global allocator is an unsafe trait")]
// SAFETY: every call is forwarded to `System` unchanged; `advise` only
// gives advice about memory inside the returned block.
unsafe impl GlobalAlloc for LargePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on to System.
        let ptr = unsafe { System.alloc(layout) };
        Self::advise(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        Self::advise(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if new_size > layout.size() {
            Self::advise(new, new_size);
        }
        new
    }
}
