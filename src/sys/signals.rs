//! SIGTERM and SIGINT, the way PID 1 in a scratch image must take them: both are blocked
//! in every thread (the mask is inherited, so call [`block`] before spawning any) and one
//! thread waits for them with `sigwait`. No handler runs in signal context.

/// Blocks SIGTERM and SIGINT in the calling thread and the threads it spawns later.
pub fn block() {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use, and
    // pthread_sigmask only reads it.
    unsafe {
        let set = set();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for SIGTERM or SIGINT and returns its name.
pub fn wait() -> &'static str {
    // SAFETY: as above; sigwait writes the signal number into `sig`.
    unsafe {
        let set = set();
        let mut sig: libc::c_int = 0;
        loop {
            if libc::sigwait(&set, &mut sig) == 0 {
                return if sig == libc::SIGTERM { "SIGTERM" } else { "SIGINT" };
            }
        }
    }
}

unsafe fn set() -> libc::sigset_t {
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::sigaddset(&mut set, libc::SIGTERM);
    libc::sigaddset(&mut set, libc::SIGINT);
    set
}
