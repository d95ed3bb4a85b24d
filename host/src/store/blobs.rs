//! Content-addressed blob files: `blobs/<sha256 hex>`.
//!
//! A blob is immutable and named by its digest, so writing one twice is
//! harmless and two tenants uploading the same bytes share one file. Writes
//! go to a temp file in the same directory, are fsynced, then renamed over
//! the final name and the directory fsynced: after a crash the name holds
//! either nothing or the whole content, never a prefix. Temp files left by
//! a crash are removed when the store is opened for serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;
use nboost_validate::sha256_digest;

/// Prefix of in-progress temp files.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Where blobs live.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

fn hex_of(digest: &str) -> Result<&str, StoreError> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex)
    } else {
        Err(StoreError::Io(format!("`{digest}` is not a sha256 digest")))
    }
}

impl Blobs {
    /// Blobs under `dir` (created if missing).
    pub fn open(dir: PathBuf) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `digest` (`sha256:<hex>` or bare hex).
    pub fn path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.dir.join(hex_of(digest)?))
    }

    /// Store `bytes`; returns their `sha256:<hex>` digest.
    pub fn write(&self, bytes: &[u8]) -> Result<String, StoreError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let digest = sha256_digest(bytes);
        let path = self.path(&digest)?;
        if path.is_file() {
            // Same name, same content: nothing to do (the content was
            // fsynced when it was first written).
            return Ok(digest);
        }
        let tmp = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        crate::fsutil::write_atomic_via(&tmp, &path, bytes)
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(digest)
    }

    /// The bytes of `digest`, checked against it.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(digest)?;
        let bytes = std::fs::read(&path).map_err(|e| StoreError::Corrupt {
            digest: digest.to_string(),
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        let got = sha256_digest(&bytes);
        if got != digest {
            return Err(StoreError::Corrupt {
                digest: digest.to_string(),
                reason: format!("{} hashes to {got}", path.display()),
            });
        }
        Ok(bytes)
    }

    /// Every blob's digest and every temp file's path.
    pub fn list(&self) -> Result<(Vec<String>, Vec<PathBuf>), StoreError> {
        let mut blobs = Vec::new();
        let mut temps = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                temps.push(entry.path());
            } else if hex_of(&name).is_ok() {
                blobs.push(format!("sha256:{name}"));
            }
        }
        Ok((blobs, temps))
    }

    /// Remove the blob of `digest` (missing is fine).
    pub fn remove(&self, digest: &str) -> Result<(), StoreError> {
        let path = self.path(digest)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }
}

#[cfg(feature = "uploads")]
impl super::BlobStore for Blobs {
    fn write(&self, bytes: &[u8]) -> Result<String, StoreError> {
        Blobs::write(self, bytes)
    }

    fn read(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        Blobs::read(self, digest)
    }

    fn list(&self) -> Result<Vec<(String, Option<std::time::Duration>)>, StoreError> {
        let (blobs, _) = Blobs::list(self)?;
        // Every writer of these files is this process (the directory is
        // locked), and its pins cover uploads in progress: no age needed.
        Ok(blobs.into_iter().map(|d| (d, None)).collect())
    }

    fn remove(&self, digest: &str) -> Result<(), StoreError> {
        Blobs::remove(self, digest)
    }

    fn recover(&self) -> Result<(), StoreError> {
        let (_, temps) = Blobs::list(self)?;
        for t in temps {
            tracing::info!(target: "nboost::store", path = %t.display(), "removing an interrupted upload");
            let _ = std::fs::remove_file(&t);
        }
        Ok(())
    }
}
