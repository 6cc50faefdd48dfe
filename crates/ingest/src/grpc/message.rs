//! gRPC's length-prefixed messages on HTTP/2: reading the one message of a
//! unary request from its body's chunks, and framing the answer.
//!
//! A message is a 1-byte compressed flag, a 4-byte big-endian length, then
//! the bytes (gRPC over HTTP/2, "Length-Prefixed-Message").

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tonic::Status;

/// Bytes before a message: the compressed flag and the length.
pub const PREFIX: usize = 5;

/// One message as received: whether it is flagged compressed, and its bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    /// The compressed flag (the request's `grpc-encoding` says how).
    pub compressed: bool,
    /// The message, still compressed when flagged so.
    pub bytes: Bytes,
}

/// Reassembles the one message of a unary request from the body's chunks.
///
/// A chunk holding the whole message gives it without a copy (with 1 MiB
/// HTTP/2 frames, a usual OTLP request is one chunk); otherwise the pieces
/// go into one buffer of exactly the declared length. A declared length over
/// the limit is refused before any of the message is buffered.
#[derive(Debug)]
pub struct MessageReader {
    limit: usize,
    /// Bytes received towards the prefix, then towards the message.
    partial: BytesMut,
    /// The compressed flag and the length, once the prefix is in.
    prefix: Option<(bool, usize)>,
    message: Option<Bytes>,
}

impl MessageReader {
    /// A reader refusing messages longer than `limit` bytes (as sent, so
    /// compressed when compressed).
    pub fn new(limit: usize) -> MessageReader {
        MessageReader {
            limit,
            partial: BytesMut::new(),
            prefix: None,
            message: None,
        }
    }

    /// Takes the next chunk of the body.
    pub fn push(&mut self, mut chunk: Bytes) -> Result<(), Status> {
        while !chunk.is_empty() {
            if self.message.is_some() {
                return Err(Status::invalid_argument(
                    "a unary Export request carries exactly one message",
                ));
            }
            match self.prefix {
                None => {
                    let prefix = if self.partial.is_empty() && chunk.len() >= PREFIX {
                        chunk.split_to(PREFIX)
                    } else {
                        let take = (PREFIX - self.partial.len()).min(chunk.len());
                        self.partial.extend_from_slice(&chunk.split_to(take));
                        if self.partial.len() < PREFIX {
                            continue;
                        }
                        self.partial.split().freeze()
                    };
                    let (compressed, len) = parse_prefix(&prefix, self.limit)?;
                    self.prefix = Some((compressed, len));
                    if len == 0 {
                        self.message = Some(Bytes::new());
                    }
                }
                Some((_, len)) => {
                    if self.partial.is_empty() && chunk.len() >= len {
                        self.message = Some(chunk.split_to(len));
                    } else {
                        if self.partial.is_empty() {
                            self.partial.reserve(len);
                        }
                        let take = (len - self.partial.len()).min(chunk.len());
                        self.partial.extend_from_slice(&chunk.split_to(take));
                        if self.partial.len() == len {
                            self.message = Some(std::mem::take(&mut self.partial).freeze());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The message, once the body has ended.
    pub fn finish(self) -> Result<Message, Status> {
        match (self.prefix, self.message) {
            (Some((compressed, _)), Some(bytes)) => Ok(Message { compressed, bytes }),
            (None, _) if self.partial.is_empty() => {
                Err(Status::invalid_argument("the request carries no message"))
            }
            _ => Err(Status::invalid_argument(
                "the request ends inside its message (truncated)",
            )),
        }
    }
}

fn parse_prefix(prefix: &[u8], limit: usize) -> Result<(bool, usize), Status> {
    let mut prefix = prefix;
    let compressed = match prefix.get_u8() {
        0 => false,
        1 => true,
        flag => {
            return Err(Status::invalid_argument(format!(
                "invalid compressed flag {flag} (0 or 1)"
            )))
        }
    };
    let len = prefix.get_u32() as usize;
    if len > limit {
        return Err(Status::resource_exhausted(format!(
            "message of {len} bytes is larger than the limit of {limit} bytes"
        )));
    }
    Ok((compressed, len))
}

/// `message` framed as an uncompressed gRPC message.
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tonic::Code;

    fn framed(flag: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![flag];
        f.extend_from_slice(&(body.len() as u32).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn read(chunks: &[&[u8]], limit: usize) -> Result<Message, Status> {
        let mut reader = MessageReader::new(limit);
        for c in chunks {
            reader.push(Bytes::copy_from_slice(c))?;
        }
        reader.finish()
    }

    #[test]
    fn a_message_in_one_chunk_is_taken_without_a_copy() {
        let chunk = Bytes::from(framed(0, b"hello"));
        let mut reader = MessageReader::new(100);
        reader.push(chunk.clone()).unwrap();
        let m = reader.finish().unwrap();
        assert_eq!(&m.bytes[..], b"hello");
        assert!(!m.compressed);
        assert_eq!(
            m.bytes.as_ptr(),
            chunk[PREFIX..].as_ptr(),
            "a slice of the chunk"
        );
    }

    #[test]
    fn a_message_split_anywhere_is_reassembled() {
        let whole = framed(1, b"0123456789");
        for a in 0..=whole.len() {
            for b in a..=whole.len() {
                let m = read(&[&whole[..a], &whole[a..b], &whole[b..]], 100).unwrap();
                assert_eq!(&m.bytes[..], b"0123456789", "cut at {a} and {b}");
                assert!(m.compressed);
            }
        }
    }

    #[test]
    fn an_empty_message_is_a_message() {
        let m = read(&[&framed(0, b"")], 100).unwrap();
        assert!(m.bytes.is_empty());
    }

    #[test]
    fn a_length_over_the_limit_is_refused_from_the_prefix_alone() {
        let mut prefix = vec![0u8];
        prefix.extend_from_slice(&(1u32 << 30).to_be_bytes());
        let mut reader = MessageReader::new(1 << 20);
        let err = reader.push(Bytes::from(prefix)).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(
            reader.partial.capacity() < 64,
            "nothing of the message buffered"
        );
    }

    #[test]
    fn malformed_bodies_are_invalid_arguments() {
        let two = [framed(0, b"a"), framed(0, b"b")].concat();
        let (long, bad_flag) = (framed(0, b"abcdef"), framed(2, b"abc"));
        let cases: [(&str, Vec<&[u8]>); 4] = [
            ("no message", vec![]),
            ("truncated", vec![&long[..8]]),
            ("bad flag", vec![&bad_flag[..]]),
            ("two messages", vec![&two[..]]),
        ];
        for (what, chunks) in cases {
            let err = read(&chunks, 100).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        }
    }

    #[test]
    fn an_answer_is_framed_uncompressed() {
        assert_eq!(&frame(b"ok")[..], &framed(0, b"ok")[..]);
    }
}
