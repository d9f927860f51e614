//! Randomness from the kernel (`/dev/urandom`): key generation and backoff jitter.
//! Linux is the only platform the agent runs on, so no abstraction over others.

use std::io::Read;

/// Fills `buf` from `/dev/urandom`.
pub fn fill(buf: &mut [u8]) -> std::io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// A uniformly distributed number in `0..bound` for jitter; falls back to the clock when
/// `/dev/urandom` cannot be read (jitter quality is not a security property).
pub fn below(bound: u64) -> u64 {
    if bound == 0 {
        return 0;
    }
    let mut b = [0u8; 8];
    if fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        b = u64::from(nanos).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes();
    }
    u64::from_le_bytes(b) % bound
}
