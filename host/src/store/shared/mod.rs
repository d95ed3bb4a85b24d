//! Shared state for replicas (feature `shared`): metadata in PostgreSQL
//! ([`pg`]), blobs and precompiled artifacts in S3-compatible object
//! storage ([`s3`]), behind the same [`MetaStore`] / [`BlobStore`] traits
//! as the single-node store, so the serving core does not know which it
//! runs on.
//!
//! Why this shape: a replica must be disposable. Everything a tenant
//! created lives in the database and the bucket; a replica holds only
//! caches (the read cache of [`super::cache`], blobs and artifacts on its
//! local disk, keyed by digest so they can never be stale). What a replica
//! must learn quickly is that the metadata moved: every write transaction
//! bumps one generation row and sends `NOTIFY nboost_changes` with it
//! ([`watch`]); each replica LISTENs, and polls the generation row every
//! [`POLL`] in case a notification was lost (connection down), so a change
//! made through one replica is served by every other within one poll
//! period at worst, typically milliseconds.
//!
//! The store API is synchronous (it is called on blocking threads of the
//! serving core), the drivers are async: a small runtime owned by the
//! store runs them ([`Bridge`]); callers wait on a channel, which works on
//! any thread.

pub mod migrate;
mod pg;
mod s3;
mod tables;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;
pub use pg::PgMeta;
pub use s3::S3Blobs;

/// How often a replica reads the generation row (the propagation bound
/// when notifications are lost) and refreshes its heartbeat.
pub const POLL: Duration = Duration::from_secs(1);
/// A replica whose heartbeat is older than this is not counted live.
pub const REPLICA_TTL: Duration = Duration::from_secs(10);
/// How long one database or object-store operation may take before the
/// caller gets [`StoreError::Unavailable`].
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a replica's shared state lives.
#[derive(Debug, Clone)]
pub struct SharedConfig {
    /// `postgres://USER[:PASS]@HOST[:PORT]/DB`.
    pub database_url: String,
    /// `s3://BUCKET[/PREFIX]`; endpoint and credentials from the `AWS_*`
    /// environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`).
    pub object_store: String,
    /// Object-store options over the `AWS_*` environment (`aws_endpoint`,
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`, ...:
    /// the `object_store` crate's S3 configuration keys).
    pub s3_options: Vec<(String, String)>,
    /// Connections in this replica's pool.
    pub pool_size: usize,
    /// Blobs younger than this are never garbage-collected (an upload on
    /// another replica may be about to commit the row naming its blob).
    pub garbage_min_age: Duration,
    /// Heartbeat and count live replicas (serving); the CLI doesn't.
    pub heartbeat: bool,
}

/// The store's own async runtime (see the module docs).
pub struct Bridge {
    rt: tokio::runtime::Runtime,
}

impl Bridge {
    fn new() -> Result<Arc<Self>, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nboost-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(format!("cannot start the store's runtime: {e}")))?;
        Ok(Arc::new(Self { rt }))
    }

    /// Run `f` on the store's runtime and wait for it, at most
    /// [`OP_TIMEOUT`].
    pub fn block<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let r = match tokio::time::timeout(OP_TIMEOUT, f).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::Unavailable(format!(
                    "{what}: no answer within {} s",
                    OP_TIMEOUT.as_secs()
                ))),
            };
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "{what}: the store stopped"
            )))
        })
    }

    /// Spawn a background task on the store's runtime.
    pub fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        self.rt.spawn(f);
    }
}

/// Open the shared store: connect (a clear error when the database cannot
/// be reached), run pending migrations, start watching for changes;
/// `dir` holds this replica's local caches.
pub fn open(dir: &Path, config: &SharedConfig) -> Result<Store, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let bridge = Bridge::new()?;
    let meta = PgMeta::connect(bridge.clone(), config)?;
    let blobs = S3Blobs::open(bridge, dir, config)?;
    Ok(Store::with_backends(
        dir,
        Arc::new(meta),
        Arc::new(blobs),
        "postgres",
    ))
}
