//! Identifiers: a prefix, the creation time and randomness, so ids sort roughly by creation and never collide.

use std::sync::atomic::{AtomicU64, Ordering};

/// Makes an id like `job_0193a1b2c3d4e5f6a7b8c9d0`: 12 hex digits of Unix milliseconds, then 12 of randomness.
pub fn new_id(prefix: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0);
    format!("{prefix}_{:012x}{:012x}", millis & 0xffff_ffff_ffff, random_u64() & 0xffff_ffff_ffff)
}

/// Random bits: a per-thread generator (xorshift128+) seeded from the OS, so making an id costs no system call. The
/// 48 random bits of an id keep ids made in the same millisecond apart; they are not secrets (every lookup is
/// authorized by the caller's agent).
fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<[u64; 2]> = Cell::new(seed());
    }
    STATE.with(|state| {
        let [mut s1, s0] = state.get();
        s1 ^= s1 << 23;
        s1 ^= s1 >> 17;
        s1 ^= s0;
        s1 ^= s0 >> 26;
        state.set([s0, s1]);
        s0.wrapping_add(s1)
    })
}

/// A generator's seed from the OS, with a counter mixed in as a fallback should the OS source ever fail.
fn seed() -> [u64; 2] {
    static COUNTER: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let fallback = COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes[..8].copy_from_slice(&fallback.to_le_bytes());
        bytes[8..].copy_from_slice(&(nanos as u64).to_le_bytes());
    }
    let first = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([1; 8]));
    let second = u64::from_le_bytes(bytes[8..].try_into().unwrap_or([2; 8]));
    // xorshift128+ needs a state that is not all zeros.
    [first | 1, second]
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = super::new_id("job");
        let b = super::new_id("job");
        assert!(a.starts_with("job_") && a.len() == 28, "{a}");
        assert_ne!(a, b);
    }
}
