//! The write-ahead log: segment files of checksummed frames, written by one
//! thread with group commit.
//!
//! Every write request becomes one frame. Writers hand their frame to the WAL
//! thread over a bounded queue (a slow disk fills the queue and so slows the
//! writers: backpressure, not memory growth). The thread takes everything
//! queued, writes it with one `write`, syncs once per the [`Durability`]
//! mode, hands the committed records to the [`WalSink`] (the write buffer) in
//! log order, and only then answers the writers. Being the single sequencer,
//! the thread is also where the buffer is frozen for persistence, so "the
//! frozen generation holds exactly the segments up to N" is true by
//! construction.
//!
//! On start, [`replay`] reads the segments not yet persisted. A torn or
//! corrupt tail of the *last* segment is a write that was never acknowledged:
//! it is cut, with a warning. Damage anywhere else is refused with an error:
//! acknowledged data would be missing.

mod record;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

pub use record::WalTable;
pub(crate) use record::encode_payload;
use record::{Frame, SEGMENT_MAGIC, append_frame, decode_payload, next_frame};

use crate::fsutil::sync_dir;
use crate::metrics::StorageMetrics;
use crate::{Error, Result};

/// When a WAL write counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync every group commit before acknowledging it (the default).
    Fsync,
    /// Acknowledge after `write`; fsync at most this often. A machine crash
    /// loses up to one interval of acknowledged writes; a process crash none.
    Interval(Duration),
    /// Never fsync; leave it to the OS.
    None,
}

#[derive(Debug, Clone)]
pub struct WalConfig {
    pub durability: Durability,
    /// A segment is closed and a new one started once it grows past this.
    pub segment_bytes: u64,
    /// Writes queued for the WAL thread before writers wait.
    pub queue_depth: usize,
    /// Upper bound of one group commit's bytes.
    pub max_group_bytes: usize,
}

/// Receives what the WAL thread commits, in log order.
pub(crate) trait WalSink: Send + Sync + 'static {
    /// Records that are now durable and must become visible.
    fn committed(&self, records: Vec<Vec<WalTable>>);
    /// Freezes everything received so far as one generation covering the
    /// segments up to and including `through_segment`. Returns false (and
    /// freezes nothing) when nothing was received since the last freeze.
    fn freeze(&self, through_segment: u64) -> bool;
}

pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

/// Segment ids present in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
        let entry = entry.map_err(Error::io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// What replay found.
#[derive(Debug, Default)]
pub(crate) struct ReplaySummary {
    pub records: u64,
    pub last_segment: Option<u64>,
}

/// Replays segments after `persisted_through` in order, feeding each record
/// to `apply`. Segments up to `persisted_through` are already in Parquet and
/// are deleted.
pub(crate) fn replay(
    dir: &Path,
    persisted_through: u64,
    metrics: &StorageMetrics,
    mut apply: impl FnMut(Vec<WalTable>) -> Result<()>,
) -> Result<ReplaySummary> {
    let segments = list_segments(dir)?;
    let mut summary = ReplaySummary::default();
    for &id in segments.iter().filter(|id| **id <= persisted_through) {
        let path = segment_path(dir, id);
        fs::remove_file(&path).map_err(Error::io(&path))?;
        debug!(path = %path.display(), "removed WAL segment already persisted");
    }
    let live: Vec<u64> = segments
        .into_iter()
        .filter(|id| *id > persisted_through)
        .collect();
    for (i, &id) in live.iter().enumerate() {
        let is_last = i + 1 == live.len();
        let path = segment_path(dir, id);
        let bytes = fs::read(&path).map_err(Error::io(&path))?;
        summary.last_segment = Some(id);
        let damage = |offset: usize, reason: String| -> Result<()> {
            if !is_last {
                return Err(Error::WalCorrupt {
                    path: path.clone(),
                    offset: offset as u64,
                    reason,
                });
            }
            let cut = bytes.len() - offset;
            warn!(
                path = %path.display(), offset, cut_bytes = cut, %reason,
                "cutting torn WAL tail (a write that was never acknowledged)"
            );
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(Error::io(&path))?;
            file.set_len(offset as u64).map_err(Error::io(&path))?;
            file.sync_all().map_err(Error::io(&path))?;
            metrics.wal_torn_tails_cut.inc();
            Ok(())
        };
        if bytes.len() < SEGMENT_MAGIC.len() || &bytes[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
            if SEGMENT_MAGIC.starts_with(&bytes) {
                // Crashed while creating the segment: nothing was ever in it.
                damage(0, "segment header incomplete".into())?;
                continue;
            }
            return Err(Error::WalCorrupt {
                path,
                offset: 0,
                reason: "not a Weir WAL segment (bad magic)".into(),
            });
        }
        let mut offset = SEGMENT_MAGIC.len();
        loop {
            match next_frame(&bytes, offset) {
                Frame::End => break,
                Frame::Invalid { reason } => {
                    damage(offset, reason)?;
                    break;
                }
                Frame::Valid { payload, next } => {
                    let tables = decode_payload(payload).map_err(|reason| Error::WalCorrupt {
                        path: path.clone(),
                        offset: offset as u64,
                        reason,
                    })?;
                    apply(tables)?;
                    summary.records += 1;
                    metrics.wal_replayed_records.inc();
                    offset = next;
                }
            }
        }
    }
    Ok(summary)
}

struct Append {
    payload: Vec<u8>,
    tables: Vec<WalTable>,
    done: oneshot::Sender<Result<()>>,
}

enum Command {
    Append(Append),
    /// Freeze the buffer and start a new segment; answers the frozen
    /// generation's last segment, if anything was frozen.
    Rotate(oneshot::Sender<Result<Option<u64>>>),
    /// Periodic wake-up for [`Durability::Interval`].
    Tick,
    Shutdown(oneshot::Sender<Result<()>>),
}

/// Handle to the WAL thread.
pub(crate) struct Wal {
    tx: mpsc::Sender<Command>,
    dir: PathBuf,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Wal {
    /// Starts writing at a fresh segment `first_segment` in `dir`.
    pub(crate) fn start(
        dir: &Path,
        first_segment: u64,
        config: WalConfig,
        sink: Arc<dyn WalSink>,
        metrics: Arc<StorageMetrics>,
    ) -> Result<Self> {
        let file = create_segment(dir, first_segment)?;
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let writer = Writer {
            dir: dir.to_path_buf(),
            segment: first_segment,
            file,
            segment_bytes: SEGMENT_MAGIC.len() as u64,
            dirty: false,
            last_sync: Instant::now(),
            failed: None,
            config,
            sink,
            metrics,
        };
        let thread = std::thread::Builder::new()
            .name("weir-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Internal(format!("spawning the WAL thread: {e}")))?;
        Ok(Self {
            tx,
            dir: dir.to_path_buf(),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Appends one record; returns once it is durable and visible.
    pub(crate) async fn append(&self, payload: Vec<u8>, tables: Vec<WalTable>) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Append(Append {
                payload,
                tables,
                done,
            }))
            .await
            .map_err(|_| Error::WalClosed)?;
        rx.await.map_err(|_| Error::WalClosed)?
    }

    pub(crate) async fn rotate(&self) -> Result<Option<u64>> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Rotate(done))
            .await
            .map_err(|_| Error::WalClosed)?;
        rx.await.map_err(|_| Error::WalClosed)?
    }

    pub(crate) async fn tick(&self) {
        let _ = self.tx.send(Command::Tick).await;
    }

    /// Syncs and stops the thread. Appends after this fail with `WalClosed`.
    pub(crate) async fn shutdown(&self) -> Result<()> {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(done)).await.is_err() {
            return Ok(());
        }
        let result = rx.await.map_err(|_| Error::WalClosed)?;
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        result
    }

    /// Deletes closed segments up to and including `through`: their records
    /// are all in Parquet and recorded in the catalog.
    pub(crate) fn remove_segments_through(&self, through: u64) -> Result<usize> {
        let mut removed = 0;
        for id in list_segments(&self.dir)?
            .into_iter()
            .filter(|id| *id <= through)
        {
            let path = segment_path(&self.dir, id);
            fs::remove_file(&path).map_err(Error::io(&path))?;
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }
}

fn create_segment(dir: &Path, id: u64) -> Result<File> {
    let path = segment_path(dir, id);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| Error::WalIo {
            path: path.clone(),
            source,
        })?;
    file.write_all(SEGMENT_MAGIC)
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::WalIo {
            path: path.clone(),
            source,
        })?;
    sync_dir(dir)?;
    Ok(file)
}

struct Writer {
    dir: PathBuf,
    segment: u64,
    file: File,
    segment_bytes: u64,
    dirty: bool,
    last_sync: Instant,
    failed: Option<String>,
    config: WalConfig,
    sink: Arc<dyn WalSink>,
    metrics: Arc<StorageMetrics>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut deferred = None;
        loop {
            let command = match deferred.take() {
                Some(command) => command,
                None => match rx.blocking_recv() {
                    Some(command) => command,
                    None => break,
                },
            };
            match command {
                Command::Append(first) => {
                    let mut bytes = first.payload.len();
                    let mut group = vec![first];
                    while bytes < self.config.max_group_bytes {
                        match rx.try_recv() {
                            Ok(Command::Append(next)) => {
                                bytes += next.payload.len();
                                group.push(next);
                            }
                            Ok(other) => {
                                deferred = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit(group);
                }
                Command::Rotate(done) => {
                    let _ = done.send(self.rotate());
                }
                Command::Tick => {
                    if self.dirty
                        && let Err(e) = self.sync()
                    {
                        self.fail(e);
                    }
                }
                Command::Shutdown(done) => {
                    let result = if self.failed.is_some() {
                        Ok(())
                    } else {
                        self.sync()
                    };
                    info!(segment = self.segment, "WAL closed");
                    let _ = done.send(result);
                    return;
                }
            }
        }
        if self.failed.is_none() {
            let _ = self.sync();
        }
    }

    fn commit(&mut self, group: Vec<Append>) {
        if let Some(reason) = &self.failed {
            for append in group {
                let _ = append.done.send(Err(Error::WalFailed(reason.clone())));
            }
            return;
        }
        let mut frames = Vec::with_capacity(group.iter().map(|a| a.payload.len() + 8).sum());
        for append in &group {
            append_frame(&mut frames, &append.payload);
        }
        let written = self
            .file
            .write_all(&frames)
            .map_err(|source| Error::WalIo {
                path: segment_path(&self.dir, self.segment),
                source,
            })
            .and_then(|()| {
                self.segment_bytes += frames.len() as u64;
                self.dirty = true;
                match self.config.durability {
                    Durability::Fsync => self.sync(),
                    Durability::Interval(every) if self.last_sync.elapsed() >= every => self.sync(),
                    Durability::Interval(_) | Durability::None => Ok(()),
                }
            });
        if let Err(e) = written {
            let reason = e.to_string();
            self.fail(e);
            for append in group {
                let _ = append.done.send(Err(Error::WalFailed(reason.clone())));
            }
            return;
        }
        self.metrics.wal_bytes.inc_by(frames.len() as u64);
        self.metrics.wal_records.inc_by(group.len() as u64);
        self.metrics.wal_group_commits.inc();

        let mut records = Vec::with_capacity(group.len());
        let mut waiters = Vec::with_capacity(group.len());
        for append in group {
            records.push(append.tables);
            waiters.push(append.done);
        }
        self.sink.committed(records);
        for done in waiters {
            let _ = done.send(Ok(()));
        }
        if self.segment_bytes >= self.config.segment_bytes
            && let Err(e) = self.roll()
        {
            self.fail(e);
        }
    }

    fn sync(&mut self) -> Result<()> {
        let start = Instant::now();
        self.file.sync_data().map_err(|source| Error::WalIo {
            path: segment_path(&self.dir, self.segment),
            source,
        })?;
        self.metrics.wal_fsyncs.inc();
        self.metrics.wal_fsync_seconds.observe(start.elapsed());
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Closes the current segment and starts the next.
    fn roll(&mut self) -> Result<()> {
        self.sync()?;
        let next = self.segment + 1;
        self.file = create_segment(&self.dir, next)?;
        self.segment = next;
        self.segment_bytes = SEGMENT_MAGIC.len() as u64;
        debug!(segment = next, "WAL segment started");
        Ok(())
    }

    fn rotate(&mut self) -> Result<Option<u64>> {
        if let Some(reason) = &self.failed {
            return Err(Error::WalFailed(reason.clone()));
        }
        let through = self.segment;
        if !self.sink.freeze(through) {
            return Ok(None);
        }
        if let Err(e) = self.roll() {
            let reason = e.to_string();
            self.fail(e);
            return Err(Error::WalFailed(reason));
        }
        Ok(Some(through))
    }

    fn fail(&mut self, e: Error) {
        error!(error = %e, "WAL write failed; refusing further writes until restart");
        self.failed = Some(e.to_string());
    }
}
