//! Memory the fast path touches per packet, in 2 MiB pages.
//!
//! A worker's tables are large (100,000 sessions are some 10 MB of
//! sessions and 10 MB of map slots) and every packet reads a different part
//! of them. On 4 KiB pages each of those reads is likely to miss the TLB as
//! well as the cache, and a page walk costs as much as the lookup: with
//! 4,096 sessions in turn out of 100,000, 2 MiB pages took up to ~10 ns a
//! packet off the paths (bench/README.md, stop 14). So the tables, the LAC's holding rings
//! and replay arena, and the AF_XDP UMEM ask the kernel for transparent
//! huge pages (`madvise(MADV_HUGEPAGE)`, as DPDK and VPP put their packet
//! buffers and tables on huge pages). It is advice: with THP set to
//! `never`, or no 2 MiB page free, the memory is the same on 4 KiB pages.
//! Debian's default (`madvise`) honours it.

/// Bytes in a huge page (x86_64 and aarch64 with 4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// A slice of `len` copies of `fill`, asked for in huge pages before it is
/// first written (a page is chosen when it is first touched).
pub(crate) fn filled<T: Clone>(len: usize, fill: T) -> Box<[T]> {
    let mut table = Vec::with_capacity(len);
    let spare = table.spare_capacity_mut();
    advise_huge_pages(
        spare.as_mut_ptr().cast::<u8>(),
        core::mem::size_of_val(spare),
    );
    table.resize(len, fill);
    table.into_boxed_slice()
}

/// Ask for the 2 MiB-aligned part of `len` bytes at `start` to be backed
/// by huge pages. Best effort: a refusal changes nothing but speed.
pub(crate) fn advise_huge_pages(start: *mut u8, len: usize) {
    let first = (start as usize).next_multiple_of(HUGE_PAGE);
    let end = (start as usize).saturating_add(len) & !(HUGE_PAGE - 1);
    if end <= first {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: [first, end) lies inside the allocation of `len` bytes at
    // `start`, which the caller owns; MADV_HUGEPAGE changes no contents
    // and no protection, only how the kernel backs the pages.
    unsafe {
        libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kilobytes of `AnonHugePages` in the mappings of this process that
    /// overlap `[start, end)`.
    fn huge_kib_in(start: usize, end: usize) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut overlaps = false;
        let mut kib = 0;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((from, to)) = first.split_once('-') {
                if let (Ok(from), Ok(to)) = (
                    usize::from_str_radix(from, 16),
                    usize::from_str_radix(to, 16),
                ) {
                    overlaps = from < end && start < to;
                    continue;
                }
            }
            if overlaps {
                if let Some(v) = line.strip_prefix("AnonHugePages:") {
                    kib += v
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<usize>()
                        .unwrap_or(0);
                }
            }
        }
        kib
    }

    #[test]
    fn a_large_table_is_backed_by_huge_pages_where_the_kernel_allows_them() {
        let setting = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if !setting.contains("[madvise]") && !setting.contains("[always]") {
            eprintln!("transparent huge pages are off here ({setting:?}): nothing to check");
            return;
        }
        let table = filled(3 * HUGE_PAGE / 8, 7u64);
        assert!(table.iter().all(|&v| v == 7));
        let start = table.as_ptr() as usize;
        let kib = huge_kib_in(start, start + 3 * HUGE_PAGE);
        // 6 MiB holds at least two whole aligned 2 MiB pages.
        assert!(kib >= 2 * HUGE_PAGE / 1024, "{kib} KiB on huge pages");
    }
}
