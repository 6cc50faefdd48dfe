//! The HTTP body path of `serve`: Content-Encoding undone under a size cap,
//! then decoded and run through the merge window. Never panics, never returns
//! more than the cap, and gzip/zstd round-trips what was compressed.
//!
//! Input: byte 0 picks the encoding (bits 0-1), whether the rest is sent
//! compressed by us (a valid stream) or raw (bit 2), the signal (bits 3-4)
//! and the format (bit 5); the rest is the body.
#![no_main]
use std::io::Write;

use bytes::Bytes;
use claudewatch_enrich::{extract_request, EnrichConfig, MergeWindow, WindowLimits};
use claudewatch_ingest::body::{decompress, BodyError, ContentEncoding};
use claudewatch_otlp::{Encoding, Signal};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let encoding = match control & 3 {
        0 => ContentEncoding::Identity,
        1 => ContentEncoding::Gzip,
        _ => ContentEncoding::Zstd,
    };
    let compress_first = control & 4 != 0;
    let signal = match (control >> 3) & 3 {
        0 => Signal::Traces,
        1 => Signal::Logs,
        _ => Signal::Metrics,
    };
    let format = if control & 32 != 0 { Encoding::Json } else { Encoding::Protobuf };
    let body = if compress_first {
        match encoding {
            ContentEncoding::Identity => rest.to_vec(),
            ContentEncoding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(rest).unwrap();
                e.finish().unwrap()
            }
            ContentEncoding::Zstd => zstd::encode_all(rest, 1).unwrap(),
        }
    } else {
        rest.to_vec()
    };
    let plain = match decompress(encoding, Bytes::from(body), LIMIT) {
        Ok(plain) => plain,
        Err(BodyError::TooLarge { .. }) => {
            assert!(!compress_first || rest.len() > LIMIT, "a body within the cap was refused");
            return;
        }
        Err(BodyError::Corrupt { .. }) => {
            assert!(!compress_first, "a valid stream was called corrupt");
            return;
        }
    };
    assert!(plain.len() <= LIMIT);
    if compress_first {
        assert_eq!(&plain[..], rest, "decompression changed the body");
    }
    let mut window = MergeWindow::new(
        EnrichConfig::default(),
        WindowLimits {
            max_age_ns: 1,
            max_observations: 64,
            max_sealed_ids: 1024,
        },
    );
    // serve's path: extraction (zero-copy for protobuf traces), then the window.
    let limits = EnrichConfig::default().attribute_limits;
    let pushed = extract_request(signal, format, &plain, &limits)
        .map(|x| window.admit_extracted(x, 0, 0))
        .is_ok();
    if pushed {
        let sealed = window.seal(2, false);
        assert!(window.is_empty());
        assert!(sealed.records.len() <= sealed.origins.len());
    }
});
