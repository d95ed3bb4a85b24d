//! `nboost keys generate`, `nboost bundle build | sign | verify | inspect |
//! push | pull`, and the verification `nboost rerank --bundle` shares.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use nboost::bundle::{self, BundleError, Opened, Policy};

use super::{CliError, GlobalArgs};

impl From<BundleError> for CliError {
    fn from(e: BundleError) -> Self {
        let code = match e {
            BundleError::Io(_) => 1,
            _ => 3,
        };
        CliError {
            err: anyhow::anyhow!("bundle refused: {e}"),
            code,
        }
    }
}

/// Signing keys.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make an ed25519 key pair: BASE.key (secret, mode 0600) and BASE.pub.
    Generate {
        /// Path without extension.
        base: PathBuf,
    },
}

impl KeysCommand {
    pub fn run(self) -> Result<(), CliError> {
        let Self::Generate { base } = self;
        let (secret, public) = bundle::write_keypair(&base)?;
        let id = bundle::key_id(&bundle::read_public(&public)?);
        println!(
            "secret key {} (keep it off edge nodes)\npublic key {} (id {id})",
            secret.display(),
            public.display()
        );
        Ok(())
    }
}

/// Signed bundles for edge nodes.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Pack a manifest component with its settings, setting files and
    /// graphs into one file (signed when `--key` is given).
    Build {
        /// The manifest component.
        #[arg(long, short)]
        component: String,
        /// The bundle file to write.
        #[arg(long, short)]
        out: PathBuf,
        /// The bundle's version.
        #[arg(long, default_value = "0.1.0")]
        version: String,
        /// Refused after this many days.
        #[arg(long)]
        expires_in_days: Option<u64>,
        /// Sign with this secret key.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Also carry the component compiled ahead of time for this target
        /// (repeatable; no value: this host's), so that a node of that
        /// target loads it without compiling.
        #[arg(long, value_name = "TARGET", num_args = 0..=1, default_missing_value = "host")]
        precompile: Vec<String>,
        /// Snapshot the component right after `configure` with its
        /// settings and carry that pre-initialised component (and, with
        /// `--precompile`, its artifacts): a node starts instances
        /// configured, without parsing the tokenizer again.
        #[arg(long)]
        preinit: bool,
        /// Also carry each graph in tract's prepared form (NNEF of the
        /// decluttered model): a node on tract reads it instead of parsing
        /// ONNX, in less than half the memory.
        #[arg(long)]
        tract_form: bool,
    },
    /// Sign a bundle in place.
    Sign {
        /// The bundle.
        file: PathBuf,
        /// The secret key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a bundle as an edge node would (exit 3 when refused).
    Verify {
        /// The bundle.
        file: PathBuf,
        /// A trusted public key (repeatable).
        #[arg(long, required = true)]
        trusted_key: Vec<PathBuf>,
        /// A file of revoked bundle digests or key ids, one per line.
        #[arg(long)]
        revoked: Option<PathBuf>,
    },
    /// Print `bundle.toml` and the signer's key id (verifies nothing).
    Inspect {
        /// The bundle.
        file: PathBuf,
    },
    /// Push a bundle to an OCI registry (`registry/repository:tag`).
    Push {
        /// The bundle.
        file: PathBuf,
        /// Where to.
        reference: String,
        #[command(flatten)]
        registry: super::oci::RegistryArgs,
    },
    /// Pull a bundle from an OCI registry (`…:tag`, or `…@sha256:…` to pin
    /// it), verify it as an edge node would, and only then write it (exit
    /// 3 when refused; nothing is written).
    Pull {
        /// From where.
        reference: String,
        /// The bundle file to write (e.g. into an edge node's `--bundles`).
        #[arg(long, short)]
        out: PathBuf,
        /// A trusted public key (repeatable).
        #[arg(long, required = true)]
        trusted_key: Vec<PathBuf>,
        /// A file of revoked bundle digests or key ids, one per line.
        #[arg(long)]
        revoked: Option<PathBuf>,
        #[command(flatten)]
        registry: super::oci::RegistryArgs,
    },
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn policy(revoked: Option<&Path>) -> Result<Policy, CliError> {
    let revoked = match revoked {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    };
    Ok(Policy {
        now: now(),
        revoked,
    })
}

fn trusted_keys(keys: &[PathBuf]) -> Result<Vec<ed25519_dalek::VerifyingKey>, CliError> {
    Ok(keys
        .iter()
        .map(|k| bundle::read_public(k))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Compiled code of bundled components is cached in `dir` (keyed by digest
/// and engine), not in the throwaway unpacked copies under `unpacked`; an
/// explicit `--cache-dir` (or `--no-cache`) stands.
pub fn cache_beside(config: &mut nboost::service::RerankerConfig, unpacked: &Path, dir: &Path) {
    if config
        .cache_dir
        .as_deref()
        .is_some_and(|d| d.starts_with(unpacked))
    {
        config.cache_dir = Some(dir.join(".nboost-cache"));
    }
}

/// Verify `file` against `keys` and unpack it: into `cache` (reused by
/// the next start while the file is unchanged, see
/// [`bundle::open_cached`]), or without a cache into a temporary directory
/// (removed when the returned guard drops).
pub fn open_verified(
    file: &Path,
    keys: &[PathBuf],
    cache: Option<&Path>,
) -> Result<(Opened, Option<tempfile::TempDir>), CliError> {
    let trusted = trusted_keys(keys)?;
    if let Some(root) = cache {
        return Ok((
            bundle::open_cached(file, &trusted, &policy(None)?, root)?,
            None,
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| anyhow::anyhow!("no temporary directory: {e}"))?;
    let opened = bundle::open(file, &trusted, &policy(None)?, &dir.path().join("bundle"))?;
    Ok((opened, Some(dir)))
}

/// tract's prepared form of each of `graphs`, written under `dir`.
fn tract_forms(
    manifest: &nboost::registry::Manifest,
    graphs: &[String],
    dir: &Path,
) -> Result<Vec<(String, String, PathBuf)>, CliError> {
    let nn = nboost::nn::NnHost::new(
        nboost::nn::NnOptions::default(),
        manifest.graphs.iter().cloned(),
    );
    let mut forms = Vec::new();
    for g in graphs {
        let spec = manifest
            .graphs
            .iter()
            .find(|s| &s.name == g)
            .ok_or_else(|| anyhow::anyhow!("graph `{g}` is not declared"))?;
        let path = dir.join(format!("{g}.tar"));
        let form = nn.write_prepared(spec, &path)?;
        forms.push((g.clone(), form, path));
    }
    Ok(forms)
}

/// The manifest component `name` snapshotted after `configure`.
#[cfg(feature = "compiler")]
fn preinitialize(
    global: &GlobalArgs,
    name: &str,
) -> Result<(Vec<u8>, nboost::sandbox::ModelInfo), CliError> {
    let reranker = global.reranker_for(name)?;
    Ok(reranker.registry().preinitialize_entry(name)?)
}

/// A runtime-only build cannot compile the instrumented copy a snapshot
/// needs.
#[cfg(not(feature = "compiler"))]
fn preinitialize(
    _global: &GlobalArgs,
    _name: &str,
) -> Result<(Vec<u8>, nboost::sandbox::ModelInfo), CliError> {
    Err(CliError {
        err: anyhow::anyhow!(
            "this nboost is a runtime-only build (no compiler): pre-initialise with a full build \
             (`nboost bundle build --preinit`)"
        ),
        code: 2,
    })
}

impl BundleCommand {
    pub fn run(self, global: &GlobalArgs) -> Result<(), CliError> {
        match self {
            Self::Build {
                component,
                out,
                version,
                expires_in_days,
                key,
                precompile,
                preinit,
                tract_form,
            } => {
                let manifest = global.manifest()?;
                let key = key.as_deref().map(bundle::read_secret).transpose()?;
                let expires = expires_in_days.map(|d| now() + d * 86_400);
                let entry = manifest.components.get(&component).ok_or_else(|| {
                    anyhow::anyhow!("the manifest has no component `{component}`")
                })?;
                let preinitialized = preinit
                    .then(|| preinitialize(global, &component))
                    .transpose()?;
                let mut artifacts = Vec::new();
                if !precompile.is_empty() {
                    let wasm = match &preinitialized {
                        Some((wasm, _)) => wasm.clone(),
                        None => std::fs::read(&entry.path)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", entry.path.display()))?,
                    };
                    for t in &precompile {
                        let (target, engine, bytes) =
                            super::compile::artifact(global, &manifest, &wasm, Some(t))?;
                        artifacts.push(bundle::Precompiled {
                            target,
                            engine,
                            bytes,
                            preinitialized: preinitialized.is_some(),
                        });
                    }
                }
                let forms_dir = tempfile::tempdir().map_err(anyhow::Error::from)?;
                let graph_forms = if tract_form {
                    tract_forms(&manifest, &entry.graphs, forms_dir.path())?
                } else {
                    Vec::new()
                };
                let extras = bundle::Extras {
                    version,
                    expires,
                    precompiled: artifacts,
                    preinitialized,
                    graph_forms,
                };
                let bm = bundle::build(&manifest, &component, key.as_ref(), extras, &out)?;
                let bytes: u64 = bm.parts.iter().map(|p| p.size).sum();
                println!(
                    "{}: `{}` {} ({}, {} parts, {bytes} bytes){}",
                    out.display(),
                    bm.name,
                    bm.version,
                    bm.wit,
                    bm.parts.len(),
                    if key.is_some() {
                        ", signed"
                    } else {
                        ", unsigned"
                    }
                );
                Ok(())
            }
            Self::Sign { file, key } => {
                let key = bundle::read_secret(&key)?;
                let bm = bundle::sign(&file, &key)?;
                println!(
                    "{}: `{}` {} signed by key {}",
                    file.display(),
                    bm.name,
                    bm.version,
                    bundle::key_id(&key.verifying_key())
                );
                Ok(())
            }
            Self::Verify {
                file,
                trusted_key,
                revoked,
            } => {
                let trusted = trusted_keys(&trusted_key)?;
                let (manifest, key_id) =
                    bundle::verify(&file, &trusted, &policy(revoked.as_deref())?)?;
                println!(
                    "ok: `{}` {} signed by key {key_id}, {} parts verified",
                    manifest.name,
                    manifest.version,
                    manifest.parts.len()
                );
                Ok(())
            }
            Self::Push {
                file,
                reference,
                registry,
            } => super::oci::push_bundle(&file, &reference, &registry),
            Self::Pull {
                reference,
                out,
                trusted_key,
                revoked,
                registry,
            } => {
                let trusted = trusted_keys(&trusted_key)?;
                let policy = policy(revoked.as_deref())?;
                super::oci::pull_bundle(
                    &reference,
                    &out,
                    |p| {
                        let (m, key_id) = bundle::verify(p, &trusted, &policy)?;
                        Ok(format!(
                            "`{}` {} signed by key {key_id}, {} parts verified",
                            m.name,
                            m.version,
                            m.parts.len()
                        ))
                    },
                    &registry,
                )
            }
            Self::Inspect { file } => {
                let (bm, key) = bundle::inspect(&file)?;
                let out = serde_json::json!({"manifest": bm, "signed_by": key});
                let text = serde_json::to_string_pretty(&out).map_err(anyhow::Error::from)?;
                // A closed pipe (`| head`) is the reader's choice, not an error.
                use std::io::Write;
                match writeln!(std::io::stdout().lock(), "{text}") {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                        Err(anyhow::Error::from(e).into())
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

/// An edge node's manifest: every `*.nbb` in `dir` that verifies against
/// `keys`, unpacked under `unpack` (by digest: a bundle verified on an
/// earlier start and unchanged since is not hashed again, see
/// [`bundle::open_cached`]). A refused bundle is logged with its reason
/// and not served; none accepted is an error.
pub fn edge_manifest(
    dir: &Path,
    keys: &[PathBuf],
    revoked: Option<&Path>,
    unpack: &Path,
) -> Result<nboost::registry::Manifest, CliError> {
    let trusted = trusted_keys(keys)?;
    let policy = policy(revoked)?;
    std::fs::create_dir_all(unpack).map_err(|e| anyhow::anyhow!("{}: {e}", unpack.display()))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("--bundles {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "nbb"))
        .collect();
    files.sort();
    let mut manifest = nboost::registry::Manifest {
        dir: unpack.to_path_buf(),
        ..Default::default()
    };
    for file in &files {
        let opened = match bundle::open_cached(file, &trusted, &policy, unpack) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(target: "nboost::edge", bundle = %file.display(), "refused: {e}");
                continue;
            }
        };
        let m = opened.host_manifest();
        let clash = m
            .components
            .keys()
            .find(|c| manifest.components.contains_key(*c))
            .cloned()
            .or_else(|| {
                m.graphs
                    .iter()
                    .find(|g| manifest.graphs.iter().any(|h| h.name == g.name))
                    .map(|g| format!("graph {}", g.name))
            });
        if let Some(name) = clash {
            tracing::error!(target: "nboost::edge", bundle = %file.display(),
                            "refused: `{name}` is already served by another bundle");
            continue;
        }
        tracing::info!(target: "nboost::edge", bundle = %file.display(), component = %opened.manifest.name,
                       version = %opened.manifest.version, key = %opened.key_id, "serving");
        manifest.graphs.extend(m.graphs);
        manifest.components.extend(m.components);
    }
    if manifest.components.is_empty() {
        return Err(anyhow::anyhow!(
            "no bundle in {} verified against the trusted keys (see the log)",
            dir.display()
        )
        .into());
    }
    Ok(manifest)
}
