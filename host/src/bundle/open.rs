//! Verifying and unpacking bundles: one walk over the archive
//! (signature, revocation, expiry, then every part against the signed
//! digests), used by `verify` (keeps nothing), `open` (unpacks into a
//! staging directory renamed into place only when all passed) and
//! `open_cached` (reuses an earlier verified unpack of the same file).

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Verifier};

use super::SignatureFile;
use super::{
    archive, check_part, io, key_id, parse_manifest, sha256, BundleError, BundleManifest, Entries,
    Part, PartKind, MANIFEST, SIGNATURE,
};
use crate::nn::GraphSpec;
use crate::registry::{ComponentEntry, Manifest};
use crate::sandbox::Preinit;

/// What a verified bundle holds, unpacked under `dir`.
#[derive(Debug, Clone)]
pub struct Opened {
    /// `bundle.toml`.
    pub manifest: BundleManifest,
    /// The key that signed it.
    pub key_id: String,
    /// Where the parts are.
    pub dir: PathBuf,
}

impl Opened {
    /// A host manifest with this bundle's component (and its graphs) alone.
    pub fn host_manifest(&self) -> Manifest {
        let mut m = Manifest {
            dir: self.dir.clone(),
            ..Manifest::default()
        };
        let mut graphs = Vec::new();
        let mut setting_files = Vec::new();
        let mut component = PathBuf::new();
        let mut preinit = None;
        let mut forms = Vec::new();
        // This host's artifacts: of the component, of its pre-initialised
        // image.
        let mut precompiled = [None, None];
        for p in &self.manifest.parts {
            let path = self.dir.join(&p.path);
            match &p.kind {
                PartKind::Component => component = path,
                PartKind::Graph { name } => {
                    graphs.push(name.clone());
                    m.graphs.push(GraphSpec {
                        name: name.clone(),
                        path,
                        // Hashed while unpacking into a directory only this
                        // node writes: not hashed a second time at load.
                        sha256: None,
                        prepared: None,
                    });
                }
                PartKind::GraphForm { name, form } => forms.push((name, form.clone(), path)),
                PartKind::SettingFile { key } => setting_files.push((key.clone(), path)),
                PartKind::Precompiled {
                    target,
                    preinitialized,
                    ..
                } => {
                    if *target == crate::sandbox::engine::host_triple() {
                        precompiled[usize::from(*preinitialized)] = Some(path);
                    }
                }
                PartKind::Preinitialized { info } => preinit = Some((path, info.clone())),
            }
        }
        for (name, form, path) in forms {
            if let Some(g) = m.graphs.iter_mut().find(|g| &g.name == name) {
                g.prepared = Some((form, path));
            }
        }
        // A pre-initialised component, when the bundle has one, runs in
        // place of the component, with the artifact compiled from it.
        let (preinit, precompiled) = match preinit {
            Some((path, info)) => {
                component = path;
                (Preinit::Done(info), precompiled[1].take())
            }
            None => (Preinit::Off, precompiled[0].take()),
        };
        let name = self.manifest.name.clone();
        m.components.insert(
            name.clone(),
            ComponentEntry {
                name,
                path: component,
                sha256: None,
                description: Some(format!("bundle {}", self.manifest.version)),
                graphs,
                settings: self.manifest.settings.clone(),
                setting_files,
                limits: Default::default(),
                fusion: None,
                precompiled,
                preinit,
            },
        );
        m
    }
}

/// Checks [`open`] makes beyond the signature.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Now, unix seconds (for `expires`).
    pub now: u64,
    /// Revoked bundle digests (hex sha256 of `bundle.toml`) or key ids.
    pub revoked: Vec<String>,
}

/// Check the bundle at `path` as [`open`] does, keeping nothing: its
/// manifest and the signer's key id.
pub fn verify(
    path: &Path,
    trusted: &[ed25519_dalek::VerifyingKey],
    policy: &Policy,
) -> Result<(BundleManifest, String), BundleError> {
    walk(path, trusted, policy, |_, _| Ok(()))
}

/// Verify the bundle at `path` against `trusted` keys and unpack it into
/// `dest` (created; must not exist). Nothing is left at `dest` unless every
/// check passed.
pub fn open(
    path: &Path,
    trusted: &[ed25519_dalek::VerifyingKey],
    policy: &Policy,
    dest: &Path,
) -> Result<Opened, BundleError> {
    // Parts, as they verify, into a staging directory.
    let staging = dest.with_extension("staging");
    let _ = std::fs::remove_dir_all(&staging);
    let result = walk(path, trusted, policy, |p, bytes| {
        let target = staging.join(&p.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent.display(), e))?;
        }
        std::fs::write(&target, bytes).map_err(|e| io(target.display(), e))
    })
    .and_then(|found| {
        std::fs::rename(&staging, dest).map_err(|e| io(dest.display(), e))?;
        Ok(found)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    let (manifest, key_id) = result?;
    Ok(Opened {
        manifest,
        key_id,
        dir: dest.to_path_buf(),
    })
}

/// The one verification: signature, revocation, expiry, then every part in
/// order (handed to `part` once its size and digest match), then nothing
/// more.
fn walk(
    path: &Path,
    trusted: &[ed25519_dalek::VerifyingKey],
    policy: &Policy,
    mut part: impl FnMut(&Part, &[u8]) -> Result<(), BundleError>,
) -> Result<(BundleManifest, String), BundleError> {
    let mut tar = archive(path)?;
    let mut entries = Entries::of(&mut tar)?;
    let (bm, key_id, _) = header(&mut entries, trusted, policy)?;
    for p in &bm.parts {
        if p.path.contains("..") || p.path.starts_with('/') {
            return Err(BundleError::Malformed(format!("part path `{}`", p.path)));
        }
        let (name, bytes) = entries.next()?.ok_or_else(|| BundleError::Tampered {
            part: p.path.clone(),
            reason: "missing (the bundle is truncated)".into(),
        })?;
        if name != p.path {
            return Err(BundleError::Tampered {
                part: p.path.clone(),
                reason: format!("expected here, found `{name}`"),
            });
        }
        check_part(p, &bytes)?;
        part(p, &bytes)?;
    }
    if let Some((name, _)) = entries.next()? {
        return Err(BundleError::Tampered {
            part: name,
            reason: "not listed in the signed manifest".into(),
        });
    }
    Ok((bm, key_id))
}

/// The first two entries: `bundle.toml`, signed by a trusted key, neither
/// revoked nor expired. Its manifest, the key id and its digest.
fn header(
    entries: &mut Entries<'_>,
    trusted: &[ed25519_dalek::VerifyingKey],
    policy: &Policy,
) -> Result<(BundleManifest, String, String), BundleError> {
    let (name, manifest_bytes) = entries
        .next()?
        .ok_or_else(|| BundleError::Malformed("an empty archive".into()))?;
    if name != MANIFEST {
        return Err(BundleError::Malformed(format!(
            "the first entry is `{name}`, not {MANIFEST}"
        )));
    }
    let sig_bytes = match entries.next()? {
        Some((name, bytes)) if name == SIGNATURE => bytes,
        _ => return Err(BundleError::Unsigned),
    };
    let sig: SignatureFile = serde_json::from_slice(&sig_bytes)
        .map_err(|e| BundleError::BadSignature(format!("{SIGNATURE}: {e}")))?;
    let key = trusted
        .iter()
        .find(|k| key_id(k) == sig.key_id)
        .ok_or_else(|| {
            BundleError::BadSignature(format!(
                "signed by key {}, which is not trusted here",
                sig.key_id
            ))
        })?;
    let raw: [u8; 64] = hex::decode(&sig.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| BundleError::BadSignature("not an ed25519 signature".into()))?;
    key.verify(&manifest_bytes, &Signature::from_bytes(&raw))
        .map_err(|_| BundleError::Tampered {
            part: MANIFEST.into(),
            reason: "its signature does not verify".into(),
        })?;
    let bm = parse_manifest(&manifest_bytes)?;
    let digest = sha256(&manifest_bytes);
    if policy
        .revoked
        .iter()
        .any(|r| r == &digest || r == &sig.key_id)
    {
        return Err(BundleError::Revoked(digest));
    }
    if let Some(t) = bm.expires {
        if policy.now >= t {
            return Err(BundleError::Expired(t));
        }
    }
    Ok((bm, sig.key_id, digest))
}

/// [`open`] with a cache: bundles verified and unpacked before are reused
/// from `cache_root/DIGEST` (the digest of the signed `bundle.toml`).
///
/// Why: verifying means hashing every part (a MiniLM bundle is 90 MB, ~175
/// ms of a 500 ms cold start). What is checked on every call: the
/// signature by a trusted key, revocation and expiry (policy may change),
/// and that the bundle file is the very one verified before (its inode,
/// size and change time, recorded with the unpacked copy; any other file
/// under that digest is verified in full again). The unpacked copy lives in
/// a directory only this node writes, like the compiled-code cache, and
/// becomes valid only once every part verified.
pub fn open_cached(
    path: &Path,
    trusted: &[ed25519_dalek::VerifyingKey],
    policy: &Policy,
    cache_root: &Path,
) -> Result<Opened, BundleError> {
    let mut tar = archive(path)?;
    let (manifest, key_id, digest) = header(&mut Entries::of(&mut tar)?, trusted, policy)?;
    let meta = std::fs::metadata(path).map_err(|e| io(path.display(), e))?;
    // Inode, size and change time: ctime moves on every write and cannot
    // be set back by a user (unlike mtime).
    let stamp = {
        use std::os::unix::fs::MetadataExt;
        format!(
            "{digest} {} {} {}.{}\n",
            meta.ino(),
            meta.len(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    };
    let dest = cache_root.join(&digest);
    let marker = dest.join(VERIFIED);
    if std::fs::read_to_string(&marker).is_ok_and(|s| s == stamp) {
        return Ok(Opened {
            manifest,
            key_id,
            dir: dest,
        });
    }
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::create_dir_all(cache_root).map_err(|e| io(cache_root.display(), e))?;
    let opened = open(path, trusted, policy, &dest)?;
    crate::fsutil::write_atomic(&marker, stamp.as_bytes()).map_err(|e| io(marker.display(), e))?;
    Ok(opened)
}

/// The file beside an unpacked bundle's parts that says it verified.
const VERIFIED: &str = ".verified";
