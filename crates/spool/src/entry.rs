//! The on-disk form of one spooled request.
//!
//! ```text
//! u32 LE  payload length
//! u32 LE  CRC-32 of (seq ‖ payload)
//! u64 LE  seq
//! payload:
//!   u8      signal (0 traces, 1 logs, 2 metrics)
//!   u8      encoding (0 protobuf, 1 JSON)
//!   u16 LE  tenant length, 0xFFFF for none
//!   bytes   tenant (UTF-8)
//!   u64 LE  arrival time, ns since the epoch
//!   bytes   the decompressed request body
//! ```

use bytes::Bytes;

/// Bytes before the payload.
pub const FRAME_HEADER: usize = 16;
/// Longest payload accepted when reading (a larger length is corruption).
pub const MAX_PAYLOAD: usize = 1 << 30;
const NO_TENANT: u16 = u16::MAX;

/// One request as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the spool, increasing by one per entry.
    pub seq: u64,
    /// Signal code: 0 traces, 1 logs, 2 metrics.
    pub signal: u8,
    /// Encoding code: 0 protobuf, 1 JSON.
    pub encoding: u8,
    /// Tenant of the request.
    pub tenant: Option<String>,
    /// When the request arrived, ns since the epoch.
    pub arrived_unix_ns: u64,
    /// The decompressed body.
    pub body: Bytes,
}

/// Appends the frame of `e` to `out`.
pub fn encode(e: &Entry, out: &mut Vec<u8>) {
    encode_head(e, out);
    out.extend_from_slice(&e.body);
}

/// Appends the frame of `e` without its body, which must follow it on disk:
/// the head's length and CRC already cover the body. Lets a writer send the
/// body from where it is instead of copying it next to its head.
pub fn encode_head(e: &Entry, out: &mut Vec<u8>) {
    let tenant = e
        .tenant
        .as_deref()
        .map(|t| truncate_utf8(t, usize::from(NO_TENANT) - 1));
    let payload_len = 2 + 2 + tenant.map_or(0, str::len) + 8 + e.body.len();
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&e.seq.to_le_bytes());
    out.push(e.signal);
    out.push(e.encoding);
    match tenant {
        Some(t) => {
            out.extend_from_slice(&(t.len() as u16).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        None => out.extend_from_slice(&NO_TENANT.to_le_bytes()),
    }
    out.extend_from_slice(&e.arrived_unix_ns.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[start + 8..]);
    crc.update(&e.body);
    out[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What reading a frame at some offset found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A whole, intact entry and the frame's length.
    Entry(Entry, usize),
    /// The bytes end inside a frame (a write cut short by a crash).
    Truncated,
    /// The frame is whole but fails its checksum or its layout.
    Corrupt(&'static str),
}

/// Reads the frame at the start of `buf`.
pub fn decode(buf: &[u8]) -> Read {
    if buf.len() < FRAME_HEADER {
        return Read::Truncated;
    }
    let payload_len = u32_at(buf, 0) as usize;
    if payload_len > MAX_PAYLOAD {
        return Read::Corrupt("length beyond the largest entry");
    }
    let total = FRAME_HEADER + payload_len;
    if buf.len() < total {
        return Read::Truncated;
    }
    if crc32fast::hash(&buf[8..total]) != u32_at(buf, 4) {
        return Read::Corrupt("checksum mismatch");
    }
    let seq = u64_at(buf, 8);
    let p = &buf[FRAME_HEADER..total];
    if p.len() < 4 {
        return Read::Corrupt("payload too short");
    }
    let tenant_len = u16::from_le_bytes([p[2], p[3]]);
    let (tenant, rest) = if tenant_len == NO_TENANT {
        (None, &p[4..])
    } else {
        let n = usize::from(tenant_len);
        if p.len() < 4 + n {
            return Read::Corrupt("tenant beyond the payload");
        }
        match std::str::from_utf8(&p[4..4 + n]) {
            Ok(t) => (Some(t.to_owned()), &p[4 + n..]),
            Err(_) => return Read::Corrupt("tenant is not UTF-8"),
        }
    };
    if rest.len() < 8 {
        return Read::Corrupt("payload too short");
    }
    Read::Entry(
        Entry {
            seq,
            signal: p[0],
            encoding: p[1],
            tenant,
            arrived_unix_ns: u64_at(rest, 0),
            body: Bytes::copy_from_slice(&rest[8..]),
        },
        total,
    )
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn entry(tenant: Option<&str>, body: &[u8]) -> Entry {
        Entry {
            seq: 42,
            signal: 1,
            encoding: 0,
            tenant: tenant.map(str::to_owned),
            arrived_unix_ns: 7,
            body: Bytes::copy_from_slice(body),
        }
    }

    proptest! {
        #[test]
        fn round_trips(tenant in proptest::option::of(".{0,40}"), body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let e = entry(tenant.as_deref(), &body);
            let mut buf = Vec::new();
            encode(&e, &mut buf);
            prop_assert_eq!(decode(&buf), Read::Entry(e, buf.len()));
        }

        #[test]
        fn every_cut_is_truncated_and_every_flip_is_caught(cut in 0usize..200, flip in 0usize..200) {
            let e = entry(Some("acme"), &[9; 150]);
            let mut buf = Vec::new();
            encode(&e, &mut buf);
            let cut = cut % buf.len();
            prop_assert_eq!(decode(&buf[..cut]), Read::Truncated);
            let flip = flip % buf.len();
            buf[flip] ^= 0x40;
            prop_assert!(!matches!(decode(&buf), Read::Entry(..)));
        }
    }
}
