//! What has been stored downstream: which spooled entries a restart must
//! replay, and which of their observations it must skip.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::SpoolError;

/// The durable progress of the pipeline behind the spool.
///
/// Entries below `replay_from` are fully stored. Of the entries from
/// `replay_from` on, those in `done` are fully stored too, and those in
/// `partial` had the listed observation ordinals stored; everything else is
/// replayed after a crash. `sink_position` is the sink's own position at the
/// same moment (a file sink's length), so a restart can cut off what the sink
/// wrote after it, which the replay writes again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// First entry that may still need replaying.
    pub replay_from: u64,
    /// Inclusive ranges of fully stored entries at or after `replay_from`.
    pub done: Vec<(u64, u64)>,
    /// Entry -> the ordinals of its observations already stored.
    pub partial: BTreeMap<u64, Vec<u32>>,
    /// The sink's position when this checkpoint was taken.
    pub sink_position: Option<u64>,
}

impl Checkpoint {
    /// Whether entry `seq` was fully stored.
    pub fn is_done(&self, seq: u64) -> bool {
        seq < self.replay_from || self.done.iter().any(|&(a, b)| a <= seq && seq <= b)
    }

    /// Whether observation `ordinal` of entry `seq` was stored.
    pub fn is_stored(&self, seq: u64, ordinal: u32) -> bool {
        self.is_done(seq)
            || self
                .partial
                .get(&seq)
                .is_some_and(|o| o.binary_search(&ordinal).is_ok())
    }

    pub(crate) fn load(path: &Path) -> Result<Option<Checkpoint>, SpoolError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| SpoolError::Checkpoint {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SpoolError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Replaces the file at `path` atomically: temp file, fsync, rename, fsync dir.
    pub(crate) fn store(&self, path: &Path) -> Result<(), SpoolError> {
        let tmp = path.with_extension("tmp");
        let what = || format!("writing {}", tmp.display());
        let bytes = serde_json::to_vec(self).map_err(|e| SpoolError::Checkpoint {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| SpoolError::io(what(), e))?;
        f.write_all(&bytes).map_err(|e| SpoolError::io(what(), e))?;
        f.sync_all().map_err(|e| SpoolError::io(what(), e))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| SpoolError::io(format!("renaming {}", tmp.display()), e))?;
        crate::sync_dir(path.parent().unwrap_or(Path::new(".")))
    }
}

/// Builds the `done` ranges and `partial` map of a checkpoint from the
/// per-entry state of the entries at or after `replay_from`.
#[derive(Debug, Default)]
pub struct CheckpointBuilder {
    checkpoint: Checkpoint,
}

impl CheckpointBuilder {
    /// Starts a checkpoint replaying from `replay_from`.
    pub fn new(replay_from: u64, sink_position: Option<u64>) -> CheckpointBuilder {
        CheckpointBuilder {
            checkpoint: Checkpoint {
                replay_from,
                sink_position,
                ..Checkpoint::default()
            },
        }
    }

    /// Entry `seq` is fully stored (call in increasing `seq` order).
    pub fn done(&mut self, seq: u64) {
        match self.checkpoint.done.last_mut() {
            Some((_, end)) if *end + 1 == seq => *end = seq,
            _ => self.checkpoint.done.push((seq, seq)),
        }
    }

    /// Entry `seq` had these observation ordinals stored.
    pub fn partial(&mut self, seq: u64, mut ordinals: Vec<u32>) {
        ordinals.sort_unstable();
        ordinals.dedup();
        self.checkpoint.partial.insert(seq, ordinals);
    }

    /// The checkpoint.
    pub fn build(self) -> Checkpoint {
        self.checkpoint
    }
}
