//! The registry side of the CLI: `nboost bundle push|pull`, `nboost
//! components push|pull`, `nboost wit push|pull` (see [`nboost::oci`]).
//!
//! A pull installs nothing until what it fetched passed its checks (a
//! bundle's signature against the trusted keys, a component's static
//! validation): the bytes go to a hidden `.NAME.partial` file beside the
//! destination, are checked there, and only then renamed into place. An
//! interrupted or refused pull leaves no file under the destination's name
//! (an edge node reads only `*.nbb`, never a `.partial`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use nboost::oci::{OciError, PullLimits, Registry, RegistryOptions};

use super::CliError;

impl From<OciError> for CliError {
    fn from(e: OciError) -> Self {
        let code = match e {
            OciError::Reference(..) => 2,
            OciError::Registry(_) => 1,
            _ => 3,
        };
        let hint = match &e {
            OciError::Registry(m)
                if m.contains("https://") && m.contains("error sending request") =>
            {
                " (a registry without TLS, e.g. on loopback, needs --plain-http)"
            }
            _ => "",
        };
        CliError {
            err: anyhow::anyhow!("{e}{hint}"),
            code,
        }
    }
}

/// How to reach the registry (shared by every push and pull).
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Plain HTTP instead of HTTPS (a registry on loopback or a private
    /// network).
    #[arg(long)]
    plain_http: bool,
    /// Basic-auth user name.
    #[arg(long, env = "NBOOST_REGISTRY_USERNAME")]
    registry_username: Option<String>,
    /// Basic-auth password or token (environment only, never a flag).
    #[arg(skip = std::env::var("NBOOST_REGISTRY_PASSWORD").ok())]
    registry_password: Option<String>,
    /// Refuse to pull artifacts larger than this many bytes.
    #[arg(long, default_value_t = PullLimits::default().max_bytes)]
    max_pull_bytes: u64,
}

impl RegistryArgs {
    fn registry(&self) -> Registry {
        Registry::new(
            &RegistryOptions {
                plain_http: self.plain_http,
                username: self.registry_username.clone(),
                password: self.registry_password.clone(),
            },
            PullLimits {
                max_bytes: self.max_pull_bytes,
            },
        )
    }
}

/// Run `f` on a small runtime of its own (registry I/O only).
pub fn block_on<T>(
    f: impl std::future::Future<Output = Result<T, OciError>>,
) -> Result<T, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(f)?)
}

/// Write `bytes` beside `out` as `.NAME.partial`, run `check` on that file,
/// and only if it passes rename it to `out` (fsynced, then the directory).
pub fn install_checked(
    out: &Path,
    bytes: &[u8],
    check: impl FnOnce(&Path) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow::anyhow!("{}: not a file name", out.display()))?;
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let partial = dir.join(format!(".{name}.partial"));
    let result = (|| {
        let mut f = std::fs::File::create(&partial)
            .map_err(|e| anyhow::anyhow!("{}: {e}", partial.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| anyhow::anyhow!("{}: {e}", partial.display()))?;
        drop(f);
        check(&partial)?;
        std::fs::rename(&partial, out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn read(file: &Path) -> Result<Vec<u8>, CliError> {
    Ok(std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?)
}

/// `nboost bundle push FILE REF`: the bundle as it is (signed or not:
/// trust is checked by whoever pulls it).
pub fn push_bundle(file: &Path, reference: &str, args: &RegistryArgs) -> Result<(), CliError> {
    let (manifest, signer) = nboost::bundle::inspect(file)?;
    let annotations = BTreeMap::from([
        (
            nboost::oci::TITLE_ANNOTATION.to_string(),
            format!("{} {}", manifest.name, manifest.version),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            manifest.version.clone(),
        ),
    ]);
    let bytes = read(file)?;
    let pushed = block_on(args.registry().push_bundle(reference, bytes, annotations))?;
    println!(
        "pushed `{}` {} ({}) to {}\npin it: {}@{}",
        manifest.name,
        manifest.version,
        signer.map_or_else(|| "unsigned".to_string(), |k| format!("signed by key {k}")),
        pushed.reference,
        reference_repo(reference),
        pushed.manifest_digest
    );
    Ok(())
}

/// The `registry/repository` part of a reference (tag and digest dropped).
fn reference_repo(reference: &str) -> String {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    match no_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo.to_string(),
        _ => no_digest.to_string(),
    }
}

/// `nboost bundle pull REF -o FILE`: fetched, verified against the trusted
/// keys as an edge node would, then installed; refused bundles leave
/// nothing.
pub fn pull_bundle(
    reference: &str,
    out: &Path,
    verify: impl FnOnce(&Path) -> Result<String, CliError>,
    args: &RegistryArgs,
) -> Result<(), CliError> {
    let pulled = block_on(args.registry().pull_bundle(reference))?;
    let mut said = String::new();
    install_checked(out, &pulled.bytes, |p| {
        said = verify(p)?;
        Ok(())
    })?;
    println!(
        "{}: {said}\npulled {reference} ({})",
        out.display(),
        pulled.manifest_digest
    );
    Ok(())
}

/// `nboost components push FILE REF`: validated first (the registry
/// should not hold what no host would load).
pub fn push_component(file: &Path, reference: &str, args: &RegistryArgs) -> Result<(), CliError> {
    let bytes = read(file)?;
    let report = nboost::sandbox::validate_component(&bytes, usize::MAX)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let pushed = block_on(
        args.registry()
            .push_component(reference, bytes, BTreeMap::new()),
    )?;
    println!(
        "pushed {} ({}, {}) to {}\npin it: {}@{}",
        file.display(),
        report.world,
        report.sha256,
        pushed.reference,
        reference_repo(reference),
        pushed.manifest_digest
    );
    Ok(())
}

/// `nboost components pull REF -o FILE`: installed only if it validates.
pub fn pull_component(reference: &str, out: &Path, args: &RegistryArgs) -> Result<(), CliError> {
    let pulled = block_on(args.registry().pull_component(reference))?;
    let mut world = String::new();
    install_checked(out, &pulled.bytes, |_| {
        let report =
            nboost::sandbox::validate_component(&pulled.bytes, usize::MAX).map_err(|e| {
                CliError {
                    err: anyhow::anyhow!("{reference} is not a component this host loads: {e}"),
                    code: 3,
                }
            })?;
        world = report.world.to_string();
        Ok(())
    })?;
    println!(
        "{}: {world} component, pulled {reference} ({})",
        out.display(),
        pulled.manifest_digest
    );
    Ok(())
}

/// The WIT contract in a registry, in `wkg`'s layout.
#[derive(Debug, Subcommand)]
pub enum WitCommand {
    /// Publish the WIT package of a directory (default: this repository's
    /// `wit/`, `nboost:reranker` with its `deps/`).
    Push {
        /// Where to: `registry/namespace/name:VERSION`.
        reference: String,
        /// The WIT directory.
        #[arg(long, default_value = "wit")]
        dir: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Fetch a published WIT package and print it as WIT text.
    Pull {
        /// From where.
        reference: String,
        /// Write the text here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

impl WitCommand {
    pub fn run(self) -> Result<(), CliError> {
        match self {
            Self::Push {
                reference,
                dir,
                registry,
            } => {
                let (pushed, name) = block_on(registry.registry().push_wit(&reference, &dir))?;
                println!(
                    "pushed {name} to {}\npin it: {}@{}",
                    pushed.reference,
                    reference_repo(&reference),
                    pushed.manifest_digest
                );
                Ok(())
            }
            Self::Pull {
                reference,
                out,
                registry,
            } => {
                let (_, text) = block_on(registry.registry().pull_wit(&reference))?;
                match out {
                    Some(path) => install_checked(&path, text.as_bytes(), |_| Ok(())),
                    None => {
                        print!("{text}");
                        Ok(())
                    }
                }
            }
        }
    }
}
