//! Blobs in S3-compatible object storage, cached on the replica's disk.
//!
//! Keys: `blobs/<sha256 hex>` for uploads, `artifacts/<engine cache
//! key>/<sha256 hex>.cwasm` for precompiled components. Both are
//! content-addressed and immutable, so a local copy (the replica's
//! `blob-cache/`, written atomically and checked against its digest on
//! every read) can never be stale. An upload's blob is PUT before its row
//! is committed, so a row never names a blob the bucket lacks — unless the
//! bucket lost it, which reads report as [`StoreError::Corrupt`] for that
//! blob alone.
//!
//! Precompiled artifacts are native code. They are taken from the bucket
//! only under the engine's exact compatibility key, and the bucket is
//! trusted like the database: whoever can write either controls what the
//! replicas run.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{GetOptions, ObjectStore, PutOptions, PutPayload};

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

/// Blobs in a bucket, cached locally.
pub struct S3Blobs {
    bridge: Arc<Bridge>,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    local: Blobs,
    min_age: Duration,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("object store: {what}: {e}"))
}

impl S3Blobs {
    /// The bucket of `config.object_store` (`s3://BUCKET[/PREFIX]`), with
    /// its local cache under `dir`.
    pub fn open(
        bridge: Arc<Bridge>,
        dir: &Path,
        config: &SharedConfig,
    ) -> Result<Self, StoreError> {
        let url = url::Url::parse(&config.object_store)
            .ok()
            .filter(|u| u.scheme() == "s3" && u.host_str().is_some())
            .ok_or_else(|| {
                StoreError::InvalidName(format!(
                    "--object-store `{}` is not an s3://BUCKET[/PREFIX] URL",
                    config.object_store
                ))
            })?;
        let bucket = url.host_str().unwrap_or_default().to_string();
        let prefix = url.path().trim_matches('/').to_string();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        for (k, v) in &config.s3_options {
            let key = k
                .parse()
                .map_err(|e| StoreError::InvalidName(format!("object store option `{k}`: {e}")))?;
            builder = builder.with_config(key, v);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(
            builder
                .build()
                .map_err(|e| StoreError::InvalidName(format!("object store `{bucket}`: {e}")))?,
        );
        let this = Self {
            bridge,
            store,
            prefix,
            local: Blobs::open(dir.join("blob-cache"))?,
            min_age: config.garbage_min_age,
        };
        // Reachable and the bucket exists: a clear error at start.
        let store = this.store.clone();
        let probe = this.key("blobs/");
        this.bridge.block("opening the bucket", async move {
            let mut list = store.list(Some(&probe));
            list.try_next()
                .await
                .map_err(|e| unavailable(&format!("bucket `{bucket}`"), e))?;
            Ok(())
        })?;
        Ok(this)
    }

    fn key(&self, rest: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rest)
        } else {
            Key::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn blob_key(&self, digest: &str) -> Result<Key, StoreError> {
        let path = self.local.path(digest)?;
        let hex = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(self.key(&format!("blobs/{hex}")))
    }

    fn get(&self, key: Key, what: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        let store = self.store.clone();
        self.bridge.block(what, async move {
            match store.get_opts(&key, GetOptions::default()).await {
                Ok(r) => Ok(Some(
                    r.bytes().await.map_err(|e| unavailable(what, e))?.to_vec(),
                )),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(unavailable(what, e)),
            }
        })
    }

    fn put(&self, key: Key, bytes: &[u8], what: &'static str) -> Result<(), StoreError> {
        let store = self.store.clone();
        let payload = PutPayload::from(bytes.to_vec());
        self.bridge.block(what, async move {
            store
                .put_opts(&key, payload, PutOptions::default())
                .await
                .map_err(|e| unavailable("the write was refused", e))?;
            Ok(())
        })
    }
}

impl BlobStore for S3Blobs {
    fn write(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let digest = nboost_validate::sha256_digest(bytes);
        self.put(self.blob_key(&digest)?, bytes, "writing a blob")?;
        // The local copy is a cache: failing to write it costs a GET later.
        if let Err(e) = self.local.write(bytes) {
            tracing::warn!(target: "nboost::store", "cannot cache a blob locally: {e}");
        }
        Ok(digest)
    }

    fn read(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        if let Ok(bytes) = self.local.read(digest) {
            return Ok(bytes);
        }
        let bytes = self
            .get(self.blob_key(digest)?, "reading a blob")?
            .ok_or_else(|| StoreError::Corrupt {
                digest: digest.to_string(),
                reason: "it is missing from the object store".into(),
            })?;
        let got = nboost_validate::sha256_digest(&bytes);
        if got != digest {
            return Err(StoreError::Corrupt {
                digest: digest.to_string(),
                reason: format!("the object store's copy hashes to {got}"),
            });
        }
        if let Err(e) = self.local.write(&bytes) {
            tracing::warn!(target: "nboost::store", "cannot cache a blob locally: {e}");
        }
        Ok(bytes)
    }

    fn list(&self) -> Result<Vec<(String, Option<Duration>)>, StoreError> {
        let store = self.store.clone();
        let prefix = self.key("blobs/");
        self.bridge.block("listing blobs", async move {
            let metas: Vec<_> = store
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|e| unavailable("listing blobs", e))?;
            let now = SystemTime::now();
            Ok(metas
                .into_iter()
                .filter_map(|m| {
                    let hex = m.location.filename()?.to_string();
                    let age = now.duration_since(m.last_modified.into()).ok();
                    (hex.len() == 64).then(|| (format!("sha256:{hex}"), age))
                })
                .collect())
        })
    }

    fn remove(&self, digest: &str) -> Result<(), StoreError> {
        let store = self.store.clone();
        let key = self.blob_key(digest)?;
        self.bridge.block("removing a blob", async move {
            let keys = futures_util::stream::iter([Ok(key)]).boxed();
            let mut deleted = store.delete_stream(keys);
            while let Some(r) = deleted.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(unavailable("removing a blob", e)),
                }
            }
            Ok(())
        })?;
        self.local.remove(digest)
    }

    fn min_garbage_age(&self) -> Duration {
        self.min_age
    }

    fn recover(&self) -> Result<(), StoreError> {
        let (_, temps) = self.local.list()?;
        for t in temps {
            let _ = std::fs::remove_file(&t);
        }
        Ok(())
    }

    fn collect_at_start(&self) -> bool {
        false
    }

    fn shares_artifacts(&self) -> bool {
        true
    }

    fn get_artifact(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(self.key(&format!("artifacts/{key}")), "reading an artifact")
    }

    fn put_artifact(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put(
            self.key(&format!("artifacts/{key}")),
            bytes,
            "sharing an artifact",
        )
    }
}
