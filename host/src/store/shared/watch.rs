//! How a replica learns that the metadata moved, and how many replicas
//! are live.
//!
//! * Every write transaction bumps `nboost_generation` and sends `NOTIFY
//!   nboost_changes, '<generation>\t<tenant>[\t<kind>\t<name>]'` (delivered
//!   at commit). A dedicated connection LISTENs; each notification moves
//!   the local generation (so read caches drop their entries) and, for a
//!   graph, that tenant's graph epoch (components built on it are rebuilt).
//! * Every [`POLL`] the replica reads the generation row. A value beyond
//!   the last notification seen means a notification was lost (the
//!   listening connection was down): everything is invalidated. This is
//!   the propagation bound when notifications fail; with them a change is
//!   seen within milliseconds.
//! * The same tick upserts this replica's heartbeat row and counts rows
//!   younger than [`REPLICA_TTL`]: the live replicas, over which per-tenant
//!   concurrency quotas are divided.
//! * A successful tick (or any successful query) marks the database
//!   reachable; readiness fails after three poll periods without one.
//!
//! While the database is down nothing can change in it, so cached tenants
//! and records keep serving; when it comes back the poll compares the
//! generation and invalidates if anything moved meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

/// Local view of the shared generation.
pub(super) struct Watch {
    /// Moves on every change this replica learns of; read caches compare it.
    local: AtomicU64,
    /// Highest database generation seen in a notification (or own write).
    notified: AtomicI64,
    /// Per-tenant graph change counters, plus one for "unknown changes".
    graphs: Mutex<HashMap<String, u64>>,
    unknown: AtomicU64,
    live: AtomicU32,
    /// When the database last answered.
    last_ok: Mutex<Instant>,
    id: String,
}

impl Watch {
    /// Start the listener and the poller on `bridge`'s runtime.
    pub(super) fn start(
        bridge: &Bridge,
        pg: tokio_postgres::Config,
        pool: Pool,
        heartbeat: bool,
    ) -> Result<Arc<Self>, StoreError> {
        let id = format!(
            "{}-{}-{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "replica".into()),
            std::process::id(),
            getrandom::u32().unwrap_or(0)
        );
        let watch = Arc::new(Self {
            local: AtomicU64::new(1),
            notified: AtomicI64::new(0),
            graphs: Mutex::new(HashMap::new()),
            unknown: AtomicU64::new(0),
            live: AtomicU32::new(1),
            last_ok: Mutex::new(Instant::now()),
            id,
        });
        // The generation as of now: nothing before it needs announcing.
        {
            let pool = pool.clone();
            let g = bridge.block("reading the generation", async move {
                let c = pool
                    .get()
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                let r = c
                    .query_one("SELECT value FROM nboost_generation WHERE id = 1", &[])
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Ok(r.get::<_, i64>(0))
            })?;
            watch.notified.store(g, Ordering::SeqCst);
        }
        bridge.spawn(listen(watch.clone(), pg));
        bridge.spawn(poll(watch.clone(), pool, heartbeat));
        Ok(watch)
    }

    /// The local generation (the [`Snapshot`] of the PostgreSQL backend).
    pub(super) fn generation(&self) -> u64 {
        self.local.load(Ordering::SeqCst)
    }

    /// This process committed a write: its own reads must see it now.
    pub(super) fn local_write(&self) {
        self.local.fetch_add(1, Ordering::SeqCst);
    }

    /// The database answered a query.
    pub(super) fn saw_database(&self) {
        *self.last_ok.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    pub(super) fn live_replicas(&self) -> u32 {
        self.live.load(Ordering::Relaxed)
    }

    pub(super) fn graph_epoch(&self, tenant: &TenantId) -> u64 {
        let own = self
            .graphs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant.as_str())
            .copied()
            .unwrap_or(0);
        own + self.unknown.load(Ordering::SeqCst)
    }

    pub(super) fn ready(&self) -> Result<(), String> {
        let since = self
            .last_ok
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed();
        if since > POLL * 3 {
            Err(format!(
                "PostgreSQL has not answered for {:.1} s",
                since.as_secs_f64()
            ))
        } else {
            Ok(())
        }
    }

    fn notified(&self, payload: &str) {
        let mut parts = payload.split('\t');
        let generation: i64 = parts.next().and_then(|g| g.parse().ok()).unwrap_or(0);
        let tenant = parts.next().unwrap_or("");
        let kind = parts.next();
        self.notified.fetch_max(generation, Ordering::SeqCst);
        if kind == Some("graph") {
            *self
                .graphs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(tenant.to_string())
                .or_default() += 1;
        }
        self.local.fetch_add(1, Ordering::SeqCst);
    }

    /// The generation row read by the poller: anything beyond the last
    /// notification was missed.
    fn polled(&self, generation: i64) {
        if generation > self.notified.load(Ordering::SeqCst) {
            tracing::info!(
                target: "nboost::store",
                generation,
                "changes arrived without a notification: caches invalidated"
            );
            self.notified.fetch_max(generation, Ordering::SeqCst);
            self.unknown.fetch_add(1, Ordering::SeqCst);
            self.local.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// LISTEN on a dedicated connection, reconnecting with a short backoff.
async fn listen(watch: Arc<Watch>, pg: tokio_postgres::Config) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match pg.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx))
                        .split_notifications();
                let driver = tokio::spawn(tx);
                if client.batch_execute("LISTEN nboost_changes").await.is_ok() {
                    backoff = Duration::from_millis(100);
                    tracing::debug!(target: "nboost::store", "listening for changes");
                    while let Some(payload) = rx.recv().await {
                        watch.notified(&payload);
                    }
                }
                driver.abort();
                tracing::warn!(target: "nboost::store", "the change listener lost PostgreSQL; reconnecting");
            }
            Err(e) => {
                tracing::debug!(target: "nboost::store", "change listener cannot connect: {e}");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(POLL);
    }
}

/// Splits a connection's message stream: a driver future that must be
/// polled for the connection to make progress, and the notifications.
trait SplitNotifications {
    fn split_notifications(
        self,
    ) -> (
        std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    );
}

impl<S> SplitNotifications for S
where
    S: futures_util::Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Send + 'static,
{
    fn split_notifications(
        self,
    ) -> (
        std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = Box::pin(async move {
            let mut stream = std::pin::pin!(self);
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_string()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        (driver, rx)
    }
}

/// Every [`POLL`]: the generation row, the heartbeat, the live count.
async fn poll(watch: Arc<Watch>, pool: Pool, heartbeat: bool) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = tokio::time::timeout(OP_TIMEOUT, async {
            let c = pool.get().await.map_err(|e| e.to_string())?;
            let g: i64 = c
                .query_one("SELECT value FROM nboost_generation WHERE id = 1", &[])
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            let mut live = None;
            if heartbeat {
                let ttl = REPLICA_TTL.as_secs_f64();
                let r = c
                    .query_one(
                        "WITH beat AS (INSERT INTO nboost_replicas (id, started_at, seen_at) \
                         VALUES ($1, now(), now()) ON CONFLICT (id) DO UPDATE SET seen_at = now()) \
                         SELECT count(*) FROM nboost_replicas \
                         WHERE seen_at > now() - make_interval(secs => $2)",
                        &[&watch.id, &ttl],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                // The count's snapshot predates our own upsert on the first
                // tick: count ourselves at least.
                live = Some((r.get::<_, i64>(0) as u32).max(1));
            }
            Ok::<_, String>((g, live))
        })
        .await;
        match result {
            Ok(Ok((g, live))) => {
                watch.saw_database();
                watch.polled(g);
                if let Some(n) = live {
                    if watch.live.swap(n, Ordering::Relaxed) != n {
                        tracing::info!(target: "nboost::store", live_replicas = n, "replica count changed");
                    }
                }
            }
            Ok(Err(e)) => tracing::debug!(target: "nboost::store", "poll failed: {e}"),
            Err(_) => tracing::debug!(target: "nboost::store", "poll timed out"),
        }
    }
}
