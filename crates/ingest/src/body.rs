//! Request bodies: `Content-Encoding` undone with a hard cap on the
//! decompressed size, checked while decompressing, so a gzip or zstd bomb is
//! refused without ever allocating its expanded size.

use std::io::Read;

/// A body encoding the receiver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    /// No encoding (`identity` or absent).
    Identity,
    /// `gzip`.
    Gzip,
    /// `zstd`.
    Zstd,
}

impl ContentEncoding {
    /// Parses a `Content-Encoding` header value; `None` for unsupported encodings.
    pub fn parse(header: Option<&str>) -> Option<ContentEncoding> {
        match header.map(|h| h.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Some(ContentEncoding::Identity),
            Some("gzip") | Some("x-gzip") => Some(ContentEncoding::Gzip),
            Some("zstd") => Some(ContentEncoding::Zstd),
            Some(_) => None,
        }
    }
}

/// Why a body could not be turned into decodable bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// Over the size limit (compressed or decompressed).
    #[error("request body exceeds the limit of {limit} bytes (after decompression)")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The compressed stream is corrupt.
    #[error("cannot decompress the {encoding} body: {reason}")]
    Corrupt {
        /// `gzip` or `zstd`.
        encoding: &'static str,
        /// The decoder's description.
        reason: String,
    },
}

/// Undoes `encoding`, refusing output over `limit` bytes.
pub fn decompress(
    encoding: ContentEncoding,
    body: bytes::Bytes,
    limit: usize,
) -> Result<bytes::Bytes, BodyError> {
    match encoding {
        ContentEncoding::Identity => {
            if body.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            Ok(body)
        }
        // The decoders read the body in place (`bufread`: no copy into a
        // buffer of their own).
        ContentEncoding::Gzip => read_bounded(
            flate2::bufread::MultiGzDecoder::new(&body[..]),
            gzip_size_hint(&body),
            limit,
            "gzip",
        ),
        ContentEncoding::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(&body[..]).map_err(|e| {
                BodyError::Corrupt {
                    encoding: "zstd",
                    reason: e.to_string(),
                }
            })?;
            read_bounded(decoder, 0, limit, "zstd")
        }
    }
}

/// The size a gzip body says it expands to (its last member's ISIZE field),
/// believed only up to 64 times the compressed size: a hint for the first
/// allocation, never a promise (`read_bounded` still enforces the limit).
fn gzip_size_hint(body: &[u8]) -> usize {
    let Some(trailer) = body.len().checked_sub(4).and_then(|at| body.get(at..)) else {
        return 0;
    };
    let isize = trailer
        .try_into()
        .map_or(0, |b: [u8; 4]| u32::from_le_bytes(b) as usize);
    isize.min(body.len().saturating_mul(64))
}

fn read_bounded(
    reader: impl Read,
    size_hint: usize,
    limit: usize,
    encoding: &'static str,
) -> Result<bytes::Bytes, BodyError> {
    // Read at most limit + 1 bytes: one byte more than allowed proves the bomb.
    // Room for the hinted size and the probe byte, so that an honest body
    // fills one allocation without growing it.
    let capacity = if size_hint > 0 {
        size_hint.min(limit) + 1
    } else {
        limit.min(64 * 1024)
    };
    let mut out = Vec::with_capacity(capacity);
    let mut bounded = reader.take(limit as u64 + 1);
    bounded
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Corrupt {
            encoding,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    // A hint that lied high leaves no large unused room behind.
    if out.capacity() > 2 * out.len() + 64 * 1024 {
        out.shrink_to_fit();
    }
    Ok(out.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> bytes::Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap().into()
    }

    #[test]
    fn gzip_and_zstd_round_trip() {
        let data = b"hello otlp".repeat(100);
        assert_eq!(
            &decompress(ContentEncoding::Gzip, gzip(&data), 10_000).unwrap()[..],
            &data[..]
        );
        let z: bytes::Bytes = zstd::encode_all(&data[..], 3).unwrap().into();
        assert_eq!(
            &decompress(ContentEncoding::Zstd, z, 10_000).unwrap()[..],
            &data[..]
        );
    }

    #[test]
    fn gzip_members_and_size_hints() {
        // Pseudo-random bytes: they do not compress, so no hint is capped.
        let mut x = 1u64;
        let a: Vec<u8> = (0..6500)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect();
        let b = b"second".repeat(3);
        let two = [gzip(&a), gzip(&b)].concat();
        let whole = decompress(ContentEncoding::Gzip, two.clone().into(), 100_000).unwrap();
        assert_eq!(whole, [&a[..], &b[..]].concat());
        // The hint is the last member's size: small, so the output grew.
        assert_eq!(gzip_size_hint(&two), b.len());
        assert_eq!(gzip_size_hint(&gzip(&a)), a.len());
        // A trailer claiming more than 64 times the body is not believed.
        let mut liar = gzip(b"x").to_vec();
        let at = liar.len() - 4;
        liar[at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(gzip_size_hint(&liar), liar.len() * 64);
        assert!(decompress(ContentEncoding::Gzip, liar.into(), 100_000).is_err());
        assert_eq!(gzip_size_hint(b"ab"), 0);
    }

    #[test]
    fn bombs_are_refused_at_the_limit() {
        // 64 MiB of zeros compresses to ~64 KiB; the limit is 1 MiB.
        let zeros = vec![0u8; 64 << 20];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 200_000);
        assert_eq!(
            decompress(ContentEncoding::Gzip, bomb, 1 << 20),
            Err(BodyError::TooLarge { limit: 1 << 20 })
        );
        let zbomb: bytes::Bytes = zstd::encode_all(&zeros[..], 19).unwrap().into();
        assert_eq!(
            decompress(ContentEncoding::Zstd, zbomb, 1 << 20),
            Err(BodyError::TooLarge { limit: 1 << 20 })
        );
    }

    #[test]
    fn corrupt_streams_are_errors() {
        assert!(matches!(
            decompress(
                ContentEncoding::Gzip,
                bytes::Bytes::from_static(b"not gzip"),
                100
            ),
            Err(BodyError::Corrupt { .. })
        ));
        assert!(matches!(
            decompress(
                ContentEncoding::Zstd,
                bytes::Bytes::from_static(b"not zstd"),
                100
            ),
            Err(BodyError::Corrupt { .. })
        ));
    }

    #[test]
    fn encodings_parse() {
        assert_eq!(
            ContentEncoding::parse(None),
            Some(ContentEncoding::Identity)
        );
        assert_eq!(
            ContentEncoding::parse(Some("GZIP")),
            Some(ContentEncoding::Gzip)
        );
        assert_eq!(ContentEncoding::parse(Some("br")), None);
    }
}
