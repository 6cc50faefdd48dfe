//! The checkpoint thread: makes the worker's spool checkpoints durable
//! (checkpoint file written and fsynced, spent segments released and
//! deleted), so that the worker never waits on the disk for them.
//!
//! A checkpoint costs several fsyncs and unlinks: tens of milliseconds on a
//! slow disk. Done on the worker thread, they stopped it from taking new
//! batches, and under load the receivers then waited for the memory limit
//! with an idle CPU. The worker hands over one checkpoint at a time and keeps
//! only the newest while one is being written (a later checkpoint covers an
//! earlier one); it tells the sink a position is committed only once the
//! checkpoint covering it is durable.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

use claudewatch_spool::{Checkpoint, Spool, SpoolError};

use super::ingest::lock;
use super::Shared;

/// A checkpoint to make durable, and the sink position it covers.
pub(super) struct CommitRequest {
    pub checkpoint: Checkpoint,
    pub position: Option<u64>,
}

/// What became of a [`CommitRequest`].
pub(super) struct CommitDone {
    /// The sink position the checkpoint covers.
    pub position: Option<u64>,
    pub result: Result<(), SpoolError>,
}

/// The checkpoint thread's state (see the module documentation).
pub(super) struct Checkpointer {
    pub rx: Receiver<CommitRequest>,
    pub done: Sender<CommitDone>,
    pub spool: Arc<Mutex<Spool>>,
    /// The spool's directory (its checkpoint file is written without the lock).
    pub spool_dir: PathBuf,
    pub shared: Arc<Shared>,
}

impl Checkpointer {
    /// Commits checkpoints until the worker is gone.
    pub(super) fn run(self) {
        while let Ok(request) = self.rx.recv() {
            let result = commit(
                &self.spool,
                &self.spool_dir,
                &self.shared,
                request.checkpoint,
            );
            let done = CommitDone {
                position: request.position,
                result,
            };
            if self.done.send(done).is_err() {
                break;
            }
        }
    }
}

/// Stores `checkpoint` durably, lets the spool adopt it (the only step under
/// the spool's lock, so appends go on meanwhile) and deletes the segments it
/// released.
pub(super) fn commit(
    spool: &Mutex<Spool>,
    spool_dir: &std::path::Path,
    shared: &Shared,
    checkpoint: Checkpoint,
) -> Result<(), SpoolError> {
    claudewatch_spool::store_checkpoint(spool_dir, &checkpoint)?;
    let released = {
        let mut spool = lock(spool);
        let released = spool.adopt(checkpoint);
        shared.metrics.spool_bytes.set(spool.bytes() as i64);
        released?
    };
    claudewatch_spool::remove_segments(&released)
}
