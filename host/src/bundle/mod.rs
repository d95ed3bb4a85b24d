//! Signed bundles: one file that carries a component, its settings, its
//! setting files (a tokenizer) and the graphs it uses, for edge nodes that
//! must run only what the operator approved.
//!
//! A bundle is a tar archive:
//!
//! * `bundle.toml` — the [`BundleManifest`]: name, version, the WIT
//!   interface the component exports, optional expiry, and every part with
//!   its size and sha256;
//! * the parts (`component.wasm`, `graphs/NAME.onnx`, `files/KEY`);
//! * `bundle.sig` — an ed25519 signature over the exact bytes of
//!   `bundle.toml` (which pins every part by digest), with the signer's
//!   key id.
//!
//! [`open`] verifies before anything is kept: the signature against the
//! trusted keys, the expiry, the revocation list, then each part's size and
//! digest as it is read, with no part missing, repeated or unlisted. Parts
//! are written into a staging directory that is renamed into place only
//! when everything checked, so a refused bundle leaves nothing behind.
//! [`verify`] is the same walk, keeping nothing.

mod keys;
mod open;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use keys::{key_id, read_public, read_secret, write_keypair};
pub use open::{open, open_cached, verify, Opened, Policy};

use crate::registry::Manifest;
use crate::sandbox::ModelInfo;

/// The bundle format this host writes and reads.
pub const FORMAT: u32 = 1;

const MANIFEST: &str = "bundle.toml";
const SIGNATURE: &str = "bundle.sig";

/// Why a bundle was refused; every message names the part.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not a readable bundle.
    #[error("{0}")]
    Malformed(String),
    /// No `bundle.sig`.
    #[error("the bundle is not signed")]
    Unsigned,
    /// A signature by a key not trusted here, or one that does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// A part whose bytes are not the ones signed.
    #[error("part `{part}` was altered: {reason}")]
    Tampered {
        /// The part.
        part: String,
        /// Size or digest mismatch.
        reason: String,
    },
    /// Past its `expires`.
    #[error("the bundle expired at {0} (unix seconds)")]
    Expired(u64),
    /// On the revocation list.
    #[error("the bundle {0} is revoked")]
    Revoked(String),
    /// Reading or writing files.
    #[error("{0}")]
    Io(String),
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> BundleError {
    BundleError::Io(format!("{what}: {e}"))
}

/// `bundle.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The component's name.
    pub name: String,
    /// The bundle's version (the operator's).
    pub version: String,
    /// The interface the component exports (`nboost:reranker/reranker@0.1.0`).
    pub wit: String,
    /// Unix seconds after which the bundle is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// Literal settings for `configure`, in order.
    #[serde(default)]
    pub settings: Vec<(String, String)>,
    /// Every file of the bundle but these two.
    pub parts: Vec<Part>,
}

/// One file of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// Its path in the archive.
    pub path: String,
    /// What it is.
    pub kind: PartKind,
    /// Bytes.
    pub size: u64,
    /// Hex sha256.
    pub sha256: String,
}

/// The role of a part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PartKind {
    /// The component.
    Component,
    /// A graph it may load by `name`.
    Graph {
        /// The name it loads.
        name: String,
    },
    /// A graph's prepared form for one back-end ([`crate::nn::forms`],
    /// `bundle build --tract-form`): a node on that back-end loads it
    /// instead of parsing the ONNX graph.
    GraphForm {
        /// The graph's name.
        name: String,
        /// The form (`tract-0.23-nnef-1`); a node whose back-end reads
        /// another form ignores it.
        form: String,
    },
    /// A setting whose value is this file's text.
    SettingFile {
        /// The setting.
        key: String,
    },
    /// The component compiled ahead of time (`nboost compile`): native
    /// code, loaded only from a bundle whose signature verified, on a node
    /// of `target`, and only if wasmtime accepts it for the node's engine
    /// (version, configuration, CPU features); otherwise the node compiles
    /// the component itself (or, without a compiler, refuses).
    Precompiled {
        /// The target triple it was compiled for.
        target: String,
        /// The key of the engine that made it (`wasmtime-VERSION-HASH`).
        engine: String,
        /// Compiled from the [`PartKind::Preinitialized`] part rather than
        /// from the component.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        preinitialized: bool,
    },
    /// The component snapshotted right after `configure` with this
    /// bundle's settings (`bundle build --preinit`, see
    /// [`crate::sandbox::preinit`]): a `.wasm` whose memory already holds
    /// the configured state. A node runs it in place of the component and
    /// never calls `configure`; `info` is what that `configure` returned.
    Preinitialized {
        /// What `configure` returned.
        info: ModelInfo,
    },
}

/// An artifact to put in a bundle (see [`PartKind::Precompiled`]).
#[derive(Debug, Clone)]
pub struct Precompiled {
    /// The target triple.
    pub target: String,
    /// The engine key.
    pub engine: String,
    /// The artifact.
    pub bytes: Vec<u8>,
    /// Compiled from the pre-initialised component.
    pub preinitialized: bool,
}

/// `bundle.sig`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    key_id: String,
    signature: String,
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What a bundle carries beyond the component and its graphs and files.
#[derive(Debug, Default)]
pub struct Extras {
    /// The bundle's version.
    pub version: String,
    /// Unix seconds after which it is refused.
    pub expires: Option<u64>,
    /// Artifacts compiled ahead of time.
    pub precompiled: Vec<Precompiled>,
    /// The pre-initialised component and what its `configure` returned.
    pub preinitialized: Option<(Vec<u8>, ModelInfo)>,
    /// Prepared graph forms: graph name, form name, file.
    pub graph_forms: Vec<(String, String, std::path::PathBuf)>,
}

/// What goes into a bundle: a manifest component with everything it uses.
pub fn build(
    manifest: &Manifest,
    component: &str,
    key: Option<&ed25519_dalek::SigningKey>,
    extras: Extras,
    out: &Path,
) -> Result<BundleManifest, BundleError> {
    let Extras {
        version,
        expires,
        precompiled,
        preinitialized,
        graph_forms,
    } = extras;
    let entry = manifest.components.get(component).ok_or_else(|| {
        BundleError::Malformed(format!("the manifest has no component `{component}`"))
    })?;
    let wasm = std::fs::read(&entry.path).map_err(|e| io(entry.path.display(), e))?;
    let report = crate::sandbox::validate_component(
        &wasm,
        crate::sandbox::validate::DEFAULT_MAX_COMPONENT_BYTES,
    )
    .map_err(|e| BundleError::Malformed(format!("{}: {e}", entry.path.display())))?;
    let mut files: Vec<(Part, Vec<u8>)> = Vec::new();
    let mut add = |path: String, kind: PartKind, bytes: Vec<u8>| {
        let part = Part {
            path,
            kind,
            size: bytes.len() as u64,
            sha256: sha256(&bytes),
        };
        files.push((part, bytes));
    };
    add("component.wasm".into(), PartKind::Component, wasm);
    for g in &entry.graphs {
        let spec = manifest
            .graphs
            .iter()
            .find(|s| &s.name == g)
            .ok_or_else(|| BundleError::Malformed(format!("graph `{g}` is not declared")))?;
        let bytes = std::fs::read(&spec.path).map_err(|e| io(spec.path.display(), e))?;
        add(
            format!("graphs/{g}.onnx"),
            PartKind::Graph { name: g.clone() },
            bytes,
        );
    }
    for (k, path) in &entry.setting_files {
        let bytes = std::fs::read(path).map_err(|e| io(path.display(), e))?;
        add(
            format!("files/{k}"),
            PartKind::SettingFile { key: k.clone() },
            bytes,
        );
    }
    for (graph, form, path) in graph_forms {
        let bytes = std::fs::read(&path).map_err(|e| io(path.display(), e))?;
        add(
            format!("graphs/{graph}.{form}.tar"),
            PartKind::GraphForm { name: graph, form },
            bytes,
        );
    }
    if let Some((wasm, info)) = preinitialized {
        add(
            "preinit/component.wasm".into(),
            PartKind::Preinitialized { info },
            wasm,
        );
    }
    for p in &precompiled {
        let of = if p.preinitialized { "preinit." } else { "" };
        add(
            format!("precompiled/{of}{}.cwasm", p.target),
            PartKind::Precompiled {
                target: p.target.clone(),
                engine: p.engine.clone(),
                preinitialized: p.preinitialized,
            },
            p.bytes.clone(),
        );
    }
    let bm = BundleManifest {
        format: FORMAT,
        name: component.to_string(),
        version,
        wit: report.reranker_export.clone(),
        expires,
        settings: entry.settings.clone(),
        parts: files.iter().map(|(p, _)| p.clone()).collect(),
    };
    let text = toml::to_string(&bm).map_err(|e| BundleError::Malformed(e.to_string()))?;
    let sig = key.map(|k| sign_bytes(k, text.as_bytes()));
    write_archive(out, text.as_bytes(), sig.as_deref(), &files)?;
    Ok(bm)
}

fn sign_bytes(key: &ed25519_dalek::SigningKey, manifest: &[u8]) -> Vec<u8> {
    let sig = SignatureFile {
        key_id: key_id(&key.verifying_key()),
        signature: hex::encode(key.sign(manifest).to_bytes()),
    };
    serde_json::to_vec(&sig).unwrap_or_default()
}

fn write_archive(
    out: &Path,
    manifest: &[u8],
    sig: Option<&[u8]>,
    parts: &[(Part, Vec<u8>)],
) -> Result<(), BundleError> {
    let tmp = out.with_extension("partial");
    let file = std::fs::File::create(&tmp).map_err(|e| io(tmp.display(), e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut append = |path: &str, bytes: &[u8]| -> Result<(), BundleError> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, path, bytes)
            .map_err(|e| io(format!("writing {path}"), e))
    };
    append(MANIFEST, manifest)?;
    if let Some(sig) = sig {
        append(SIGNATURE, sig)?;
    }
    for (p, bytes) in parts {
        append(&p.path, bytes)?;
    }
    tar.into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all())
        .map_err(|e| io(tmp.display(), e))?;
    std::fs::rename(&tmp, out).map_err(|e| io(out.display(), e))
}

/// Sign (or re-sign) the bundle at `path` in place.
pub fn sign(path: &Path, key: &ed25519_dalek::SigningKey) -> Result<BundleManifest, BundleError> {
    let entries = read_entries(path)?;
    let manifest = entries
        .get(MANIFEST)
        .ok_or_else(|| BundleError::Malformed(format!("no {MANIFEST}")))?;
    let bm = parse_manifest(manifest)?;
    let mut parts = Vec::new();
    for p in &bm.parts {
        let bytes = entries.get(&p.path).ok_or_else(|| BundleError::Tampered {
            part: p.path.clone(),
            reason: "missing".into(),
        })?;
        check_part(p, bytes)?;
        parts.push((p.clone(), bytes.clone()));
    }
    let sig = sign_bytes(key, manifest);
    write_archive(path, manifest, Some(&sig), &parts)?;
    Ok(bm)
}

fn parse_manifest(bytes: &[u8]) -> Result<BundleManifest, BundleError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| BundleError::Malformed(format!("{MANIFEST} is not UTF-8")))?;
    let bm: BundleManifest =
        toml::from_str(text).map_err(|e| BundleError::Malformed(format!("{MANIFEST}: {e}")))?;
    if bm.format != FORMAT {
        return Err(BundleError::Malformed(format!(
            "bundle format {} (this host reads {FORMAT})",
            bm.format
        )));
    }
    Ok(bm)
}

fn check_part(p: &Part, bytes: &[u8]) -> Result<(), BundleError> {
    if bytes.len() as u64 != p.size {
        return Err(BundleError::Tampered {
            part: p.path.clone(),
            reason: format!("{} bytes, signed as {}", bytes.len(), p.size),
        });
    }
    let got = sha256(bytes);
    if got != p.sha256 {
        return Err(BundleError::Tampered {
            part: p.path.clone(),
            reason: format!("sha256 {got}, signed as {}", p.sha256),
        });
    }
    Ok(())
}

/// The entries of an archive, in order, one at a time.
struct Entries<'a>(tar::Entries<'a, std::fs::File>);

impl<'a> Entries<'a> {
    fn of(tar: &'a mut tar::Archive<std::fs::File>) -> Result<Self, BundleError> {
        tar.entries()
            .map(Entries)
            .map_err(|e| BundleError::Malformed(format!("not a bundle: {e}")))
    }

    /// The next entry's name and bytes; a short read names the entry.
    fn next(&mut self) -> Result<Option<(String, Vec<u8>)>, BundleError> {
        let Some(entry) = self.0.next() else {
            return Ok(None);
        };
        let mut entry =
            entry.map_err(|e| BundleError::Malformed(format!("truncated or corrupt: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| BundleError::Malformed(e.to_string()))?
            .to_string_lossy()
            .to_string();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| BundleError::Tampered {
                part: name.clone(),
                reason: format!("truncated ({e})"),
            })?;
        Ok(Some((name, bytes)))
    }
}

fn archive(path: &Path) -> Result<tar::Archive<std::fs::File>, BundleError> {
    let file = std::fs::File::open(path).map_err(|e| io(path.display(), e))?;
    Ok(tar::Archive::new(file))
}

/// Every entry of the archive, in memory (for `sign` and `inspect`).
fn read_entries(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    let mut tar = archive(path)?;
    let mut entries = Entries::of(&mut tar)?;
    let mut out = BTreeMap::new();
    while let Some((name, bytes)) = entries.next()? {
        if out.insert(name.clone(), bytes).is_some() {
            return Err(BundleError::Malformed(format!("`{name}` appears twice")));
        }
    }
    Ok(out)
}

/// `bundle.toml` and the signer's key id (unchecked), for `inspect`.
pub fn inspect(path: &Path) -> Result<(BundleManifest, Option<String>), BundleError> {
    let entries = read_entries(path)?;
    let bm = parse_manifest(
        entries
            .get(MANIFEST)
            .ok_or_else(|| BundleError::Malformed(format!("no {MANIFEST}")))?,
    )?;
    let key = entries
        .get(SIGNATURE)
        .and_then(|s| serde_json::from_slice::<SignatureFile>(s).ok())
        .map(|s| s.key_id);
    Ok((bm, key))
}
