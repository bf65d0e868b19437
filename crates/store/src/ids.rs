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

/// Random bits from the OS, with a counter mixed in as a fallback should the OS source ever fail.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed).wrapping_mul(0xbf58_476d_1ce4_e5b9)
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
