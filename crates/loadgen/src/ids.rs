//! Deterministic randomness and identifiers.
//!
//! Everything about call `i` of a run is a pure function of `(seed, i)`, so any
//! worker can build any call (or rebuild it to emit a deferred twin span) with
//! no shared state, and a run is reproduced exactly by its seed.
//!
//! Identifiers that must be distinct per call (request id, response id, trace
//! and span ids) start with a *bijective* mix of the call index, so two calls
//! of one run can never share one.

/// The splitmix64 finaliser: a bijection on `u64` with good avalanche.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small, fast, deterministic generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for call `index` of the run seeded with `seed`.
    pub fn for_call(seed: u64, index: u64) -> Rng {
        Rng {
            state: mix64(seed ^ mix64(index.wrapping_add(0x5851_f42d_4c95_7f2d))),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// A uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// An index into `weights`, chosen with probability proportional to its weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return 0;
        }
        let mut pick = self.next_u64() % total;
        for (i, &w) in weights.iter().enumerate() {
            let w = u64::from(w);
            if pick < w {
                return i;
            }
            pick -= w;
        }
        weights.len() - 1
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Appends `n` base62 digits of `x` (least significant first) to `out`.
fn push_base62(out: &mut String, mut x: u64, n: usize) {
    for _ in 0..n {
        out.push(char::from(BASE62[(x % 62) as usize]));
        x /= 62;
    }
}

/// Per-run keys that make ids of different seeds differ.
#[derive(Debug, Clone, Copy)]
pub struct IdKeys {
    k_req: u64,
    k_msg: u64,
    k_trace: u64,
    k_span: u64,
}

impl IdKeys {
    /// Keys derived from the run's seed.
    pub fn new(seed: u64) -> IdKeys {
        IdKeys {
            k_req: mix64(seed ^ 0x7265_715f),
            k_msg: mix64(seed ^ 0x6d73_675f),
            k_trace: mix64(seed ^ 0x7472_6163),
            k_span: mix64(seed ^ 0x7370_616e),
        }
    }

    /// The API request id of call `index`, shaped like the real ones
    /// (`req_011CW` + 24 base62 characters); distinct for every index.
    pub fn request_id(&self, index: u64) -> String {
        let unique = mix64(index ^ self.k_req);
        let mut s = String::with_capacity(33);
        s.push_str("req_011CW");
        push_base62(&mut s, unique, 11);
        push_base62(&mut s, mix64(unique ^ self.k_msg), 11);
        push_base62(&mut s, mix64(unique ^ self.k_trace), 2);
        s
    }

    /// The message id (`msg_01` + 24 base62 characters) of call `index`.
    pub fn response_id(&self, index: u64) -> String {
        let unique = mix64(index ^ self.k_msg);
        let mut s = String::with_capacity(30);
        s.push_str("msg_01");
        push_base62(&mut s, unique, 11);
        push_base62(&mut s, mix64(unique ^ self.k_req), 11);
        push_base62(&mut s, mix64(unique ^ self.k_span), 2);
        s
    }

    /// The trace id of trace `which` (0..8) of call `index`; distinct per (index, which).
    pub fn trace_id(&self, index: u64, which: u64) -> [u8; 16] {
        let key = index.wrapping_mul(8).wrapping_add(which & 7);
        let hi = mix64(key ^ self.k_trace);
        let lo = mix64(hi ^ self.k_span) | 1;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&hi.to_be_bytes());
        id[8..].copy_from_slice(&lo.to_be_bytes());
        id
    }

    /// The span id of span `which` (0..8) of call `index`; distinct per (index, which).
    pub fn span_id(&self, index: u64, which: u64) -> [u8; 8] {
        let key = index.wrapping_mul(8).wrapping_add(which & 7);
        let v = mix64(key ^ self.k_span);
        // Never the all-zero (invalid) id: 0 has exactly one preimage.
        let v = if v == 0 { 1 } else { v };
        v.to_be_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_distinct_and_shaped() {
        let k = IdKeys::new(42);
        let mut req = HashSet::new();
        let mut msg = HashSet::new();
        let mut spans = HashSet::new();
        for i in 0..20_000 {
            let r = k.request_id(i);
            assert_eq!(r.len(), 33);
            assert!(r.starts_with("req_011CW"));
            assert!(req.insert(r));
            assert!(msg.insert(k.response_id(i)));
            for w in 0..4 {
                assert!(spans.insert(k.span_id(i, w)));
            }
        }
        assert_ne!(IdKeys::new(1).request_id(0), IdKeys::new(2).request_id(0));
    }

    #[test]
    fn weighted_respects_zero_weights() {
        let mut r = Rng::for_call(1, 2);
        for _ in 0..1000 {
            assert_ne!(r.weighted(&[5, 0, 5]), 1);
        }
    }
}
