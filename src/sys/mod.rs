//! Every `unsafe` of the crate, behind safe functions: blocking and waiting for signals
//! ([`signals`]), trimming thread stacks ([`stack`]) and the workers' scheduling
//! class ([`batch_scheduling`]).

pub(crate) mod signals;
pub(crate) mod stack;

/// Puts the calling (worker) thread under SCHED_BATCH, which the kernel never lets preempt
/// a running thread on wake-up: a worker woken by a message then does not take the CPU from
/// the poll thread that woke it and is about to re-poll. Needs no privilege; should a
/// seccomp profile refuse it, the worker just runs as before.
pub fn batch_scheduling() {
    // SAFETY: sched_param is plain data (all zero: priority 0, as SCHED_BATCH requires);
    // the system call only reads it; pid 0 is the calling thread. (musl's wrapper always
    // fails with ENOSYS, so the call is made directly.)
    unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::syscall(libc::SYS_sched_setscheduler, 0, libc::SCHED_BATCH, &param);
    }
}
