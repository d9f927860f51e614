//! Giving a thread's unused stack pages back to the kernel. A poll thread is deepest in its
//! TLS handshake (rustls and ring keep large values on the stack: about 50 KiB), then
//! spends hours waiting in long polls with those pages still resident, which is an eighth
//! of the idle agent's memory. Pages below the stack pointer hold nothing live, so they
//! can be dropped; if the stack grows again the kernel maps zero pages as it always does.

/// Drops the calling thread's stack pages more than two pages below its current depth.
/// Best effort: does nothing where the thread's stack cannot be found. Not for the main
/// thread (whose stack the C library can only estimate).
#[inline(never)]
pub fn trim() {
    let Some((low, high)) = bounds() else { return };
    let here = 0u8;
    let depth = std::hint::black_box(&here) as *const u8 as usize;
    let page = page_size();
    // Two pages of margin hold this frame's callees (madvise's wrapper) and the red zone.
    let end = depth.saturating_sub(2 * page) & !(page - 1);
    let start = (low + page - 1) & !(page - 1);
    if depth >= high || depth <= low || end <= start {
        return;
    }
    // SAFETY: [start, end) lies inside this thread's own stack mapping and below every
    // live frame of it (stacks grow down on the platforms this builds for); MADV_DONTNEED
    // on private anonymous memory only makes those pages read as zero when next touched.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}

/// The calling thread's stack as [lowest address, highest address).
fn bounds() -> Option<(usize, usize)> {
    // SAFETY: the attribute object is initialised by pthread_getattr_np before it is read
    // and destroyed after; the out-parameters are plain locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let (mut base, mut size): (*mut libc::c_void, usize) = (std::ptr::null_mut(), 0);
        let found = libc::pthread_attr_getstack(&attr, &mut base, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        (found && !base.is_null() && size > 0).then(|| (base as usize, base as usize + size))
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of the pages in [start, end) are resident, from mincore.
    fn resident_pages(start: usize, end: usize) -> usize {
        let page = page_size();
        let (start, end) = (start & !(page - 1), (end + page - 1) & !(page - 1));
        let mut map = vec![0u8; (end - start) / page];
        // SAFETY: the range is page-aligned inside this thread's stack mapping, and `map`
        // has one byte per page of it.
        let rc = unsafe { libc::mincore(start as *mut libc::c_void, end - start, map.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        map.iter().filter(|b| **b & 1 == 1).count()
    }

    #[inline(never)]
    fn go_deep(bytes: usize) -> u64 {
        let mut frame = [0u8; 16 * 1024];
        for (i, b) in frame.iter_mut().enumerate() {
            *b = i as u8;
        }
        let sum = std::hint::black_box(&frame).iter().map(|b| u64::from(*b)).sum::<u64>();
        if bytes > frame.len() {
            sum + go_deep(bytes - frame.len())
        } else {
            sum
        }
    }

    #[test]
    fn pages_a_deep_call_left_behind_are_given_back_and_the_stack_still_works() {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(|| {
                let (low, high) = bounds().expect("a spawned thread's stack is known");
                assert!(go_deep(256 * 1024) > 0);
                let before = resident_pages(low, high);
                trim();
                let after = resident_pages(low, high);
                assert!(before >= 64, "the deep call touched {before} pages");
                assert!(after + 48 <= before, "{before} pages resident before trimming, {after} after");
                // The dropped pages come back as zero pages when used again.
                assert!(go_deep(256 * 1024) > 0);
                assert!(resident_pages(low, high) >= before - 2);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
