//! The storage engine's background work: persistence, compaction, retention
//! and (in interval durability) WAL syncs, each on its own schedule.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, warn};

use crate::Store;

#[derive(Debug, Clone)]
pub struct BackgroundConfig {
    /// Persist the buffer at least this often (also when it passes
    /// `persist_buffer_bytes`).
    pub persist_interval: Duration,
    pub compaction_interval: Duration,
    pub retention_interval: Duration,
    /// WAL sync period for interval durability; `None` otherwise.
    pub wal_sync_interval: Option<Duration>,
}

/// Runs until `shutdown` turns true.
pub fn spawn_background(
    store: Store,
    config: BackgroundConfig,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut persist = tokio::time::interval(config.persist_interval);
        let mut compact = tokio::time::interval(config.compaction_interval);
        let mut retain = tokio::time::interval(config.retention_interval);
        let mut sync = tokio::time::interval(
            config
                .wal_sync_interval
                .unwrap_or(Duration::from_secs(3600)),
        );
        for timer in [&mut persist, &mut compact, &mut retain, &mut sync] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick fires at once; nothing is due at start-up.
            timer.reset();
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
                _ = persist.tick() => run_persist(&store).await,
                _ = store.persist_wanted() => run_persist(&store).await,
                _ = compact.tick() => {
                    if let Err(e) = store.compact().await {
                        error!(error = %e, "compaction failed");
                    }
                }
                _ = retain.tick() => {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                    if let Err(e) = store.enforce_retention(now.as_nanos() as i64).await {
                        error!(error = %e, "retention failed");
                    }
                }
                _ = sync.tick(), if config.wal_sync_interval.is_some() => store.sync_wal().await,
            }
        }
    })
}

async fn run_persist(store: &Store) {
    if let Err(e) = store.persist().await {
        // The buffer and the WAL still hold everything; the next run retries.
        warn!(error = %e, "persisting the buffer failed");
    }
}
