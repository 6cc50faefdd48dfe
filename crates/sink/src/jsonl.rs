//! JSON-lines sink: one record per line, to a file (appended) or stdout.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use claudewatch_model::CallRecord;

use crate::{Sink, SinkError};

/// Where a [`JsonLinesSink`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonLinesTarget {
    /// Standard output.
    Stdout,
    /// A file, appended to (created if missing).
    File(PathBuf),
}

impl JsonLinesTarget {
    /// `-` is stdout; anything else a file path.
    pub fn parse(s: &str) -> JsonLinesTarget {
        if s == "-" {
            JsonLinesTarget::Stdout
        } else {
            JsonLinesTarget::File(PathBuf::from(s))
        }
    }
}

enum Out {
    Stdout(BufWriter<std::io::Stdout>),
    File(BufWriter<File>),
}

impl Out {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Out::Stdout(w) => w,
            Out::File(w) => w,
        }
    }
}

/// Serialized lines are handed to the writer in pieces of about this size.
const LINES_CHUNK_BYTES: usize = 1 << 20;

/// Writes records as JSON lines; `flush` fsyncs a file when asked to.
pub struct JsonLinesSink {
    out: Out,
    fsync: bool,
    target: JsonLinesTarget,
    /// File length after the last flush.
    flushed_len: u64,
    /// Lines serialized but not yet handed to `out` (reused).
    lines: Vec<u8>,
}

impl JsonLinesSink {
    /// Opens the target. With `fsync`, every flush of a regular file waits for
    /// the disk; a device or pipe (`/dev/null`, a FIFO) has nothing to sync,
    /// and fsync on it fails, so it is written without.
    pub fn open(target: JsonLinesTarget, fsync: bool) -> Result<JsonLinesSink, SinkError> {
        let out = match &target {
            JsonLinesTarget::Stdout => Out::Stdout(BufWriter::new(std::io::stdout())),
            JsonLinesTarget::File(path) => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| SinkError::Io {
                        what: format!("opening {}", path.display()),
                        source,
                    })?;
                Out::File(BufWriter::with_capacity(1 << 20, f))
            }
        };
        let (flushed_len, regular) = match &out {
            Out::File(w) => w
                .get_ref()
                .metadata()
                .map(|m| (m.len(), m.is_file()))
                .unwrap_or((0, false)),
            Out::Stdout(_) => (0, false),
        };
        let fsync = fsync && regular;
        Ok(JsonLinesSink {
            out,
            fsync,
            target,
            flushed_len,
            lines: Vec::new(),
        })
    }

    fn describe(&self) -> String {
        match &self.target {
            JsonLinesTarget::Stdout => "stdout".to_owned(),
            JsonLinesTarget::File(p) => p.display().to_string(),
        }
    }
}

impl Sink for JsonLinesSink {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn write(&mut self, records: &[CallRecord]) -> Result<(), SinkError> {
        // Records are serialized into a plain buffer (no dynamic writer call
        // per JSON fragment) and handed to the writer in large pieces.
        let lines = &mut self.lines;
        lines.clear();
        let mut written = Ok(());
        for r in records {
            if let Err(e) = crate::json_line::write_record(lines, r) {
                written = Err(std::io::Error::from(e));
                break;
            }
            lines.push(b'\n');
            if lines.len() >= LINES_CHUNK_BYTES {
                written = self.out.writer().write_all(lines);
                lines.clear();
                if written.is_err() {
                    break;
                }
            }
        }
        written
            .and_then(|()| self.out.writer().write_all(lines))
            .map_err(|source| SinkError::Io {
                what: format!("writing to {}", self.describe()),
                source,
            })
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let what = self.describe();
        let io = |source| SinkError::Io {
            what: format!("flushing {what}"),
            source,
        };
        match &mut self.out {
            Out::Stdout(w) => w.flush().map_err(io),
            Out::File(w) => {
                w.flush().map_err(io)?;
                if self.fsync {
                    w.get_ref().sync_data().map_err(io)?;
                }
                self.flushed_len = w.get_ref().metadata().map_err(io)?.len();
                Ok(())
            }
        }
    }

    fn position(&self) -> Option<u64> {
        match self.out {
            Out::File(_) => Some(self.flushed_len),
            Out::Stdout(_) => None,
        }
    }

    fn rollback(&mut self, position: u64) -> Result<(), SinkError> {
        let what = self.describe();
        let Out::File(w) = &mut self.out else {
            return Ok(());
        };
        let io = |source| SinkError::Io {
            what: format!("cutting {what} back to {position} bytes"),
            source,
        };
        w.flush().map_err(io)?;
        let f = w.get_ref();
        let len = f.metadata().map_err(io)?.len();
        if position < len {
            f.set_len(position).map_err(io)?;
            f.sync_data().map_err(io)?;
            tracing::info!(sink = %what, cut_bytes = len - position, "sink cut back to the spool checkpoint; the replay writes those records again");
        }
        self.flushed_len = position.min(len);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn appends_one_line_per_record_and_survives_reopen() {
        let path = std::env::temp_dir().join(format!("cw-jsonl-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let record: CallRecord =
            serde_json::from_str(include_str!("../testdata/record.json")).unwrap();
        for _ in 0..2 {
            let mut s = JsonLinesSink::open(JsonLinesTarget::File(path.clone()), true).unwrap();
            assert!(s.fsync, "a regular file is synced");
            s.write(&[record.clone(), record.clone()]).unwrap();
            s.flush().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4);
        let back: CallRecord = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(back, record);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn rollback_cuts_the_file_back_to_a_flushed_position() {
        let path = std::env::temp_dir().join(format!("cw-jsonl-rb-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let record: CallRecord =
            serde_json::from_str(include_str!("../testdata/record.json")).unwrap();
        let mut s = JsonLinesSink::open(JsonLinesTarget::File(path.clone()), true).unwrap();
        s.write(std::slice::from_ref(&record)).unwrap();
        s.flush().unwrap();
        let pos = s.position().unwrap();
        s.write(&[record.clone(), record.clone()]).unwrap();
        s.flush().unwrap();
        drop(s);
        let mut s = JsonLinesSink::open(JsonLinesTarget::File(path.clone()), true).unwrap();
        assert!(s.position().unwrap() > pos);
        s.rollback(pos).unwrap();
        s.write(std::slice::from_ref(&record)).unwrap();
        s.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_device_is_written_without_fsync() {
        // fsync on /dev/null fails (EINVAL): asked for, it must be skipped.
        let record: CallRecord =
            serde_json::from_str(include_str!("../testdata/record.json")).unwrap();
        let mut sink =
            JsonLinesSink::open(JsonLinesTarget::File("/dev/null".into()), true).unwrap();
        assert!(!sink.fsync);
        sink.write(&[record]).unwrap();
        sink.flush().unwrap();
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let err = JsonLinesSink::open(
            JsonLinesTarget::File("/nonexistent/dir/x.jsonl".into()),
            false,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("/nonexistent/dir/x.jsonl"));
    }
}
