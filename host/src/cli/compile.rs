//! `nboost compile`: a component compiled ahead of time, for this host or
//! another target, into the artifact a node loads without compiling.
//!
//! Why: compiling MiniLM's component costs an edge node seconds of CPU on
//! its first start (the JavaScript one, with its engine inside, more); an
//! artifact made once by the operator costs a node a `mmap`. Precompiled
//! code is native code, so nodes take artifacts only from signed bundles
//! (`nboost bundle build --precompile [TARGET]`), never from a bare file:
//! this command's output is for inspection and for building bundles.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
#[cfg(feature = "compiler")]
use nboost::sandbox::engine::{host_triple, precompile};

use super::{CliError, GlobalArgs};

/// Compile a component ahead of time (Cranelift, this host's engine
/// configuration).
#[derive(Debug, Args)]
pub struct CompileCommand {
    /// A manifest component, or a .wasm file.
    #[arg(value_name = "NAME|FILE.wasm")]
    component: String,
    /// The artifact to write (default: NAME.TARGET.cwasm here).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Target triple (default: this host's), e.g. aarch64-unknown-linux-gnu.
    /// (`--target` is the device a graph runs on.)
    #[arg(long)]
    triple: Option<String>,
}

/// The artifact of `bytes` for `target` ("host" or `None`: this host):
/// the resolved triple, the engine key and the bytes.
#[cfg(feature = "compiler")]
pub fn artifact(
    global: &GlobalArgs,
    manifest: &nboost::registry::Manifest,
    bytes: &[u8],
    target: Option<&str>,
) -> Result<(String, String, Vec<u8>), CliError> {
    let triple = match target {
        None | Some("host") => host_triple(),
        Some(t) => t.to_string(),
    };
    let options = global.config(manifest).engine;
    let (artifact, key) = precompile(&options, Some(&triple), bytes).map_err(|e| CliError {
        err: anyhow::anyhow!("cannot compile for {triple}: {e:#}"),
        code: if e.to_string().contains("target") {
            2
        } else {
            1
        },
    })?;
    Ok((triple, key, artifact))
}

/// A runtime-only build has no compiler: the operator's full build makes
/// artifacts.
#[cfg(not(feature = "compiler"))]
pub fn artifact(
    _global: &GlobalArgs,
    _manifest: &nboost::registry::Manifest,
    _bytes: &[u8],
    _target: Option<&str>,
) -> Result<(String, String, Vec<u8>), CliError> {
    Err(CliError {
        err: anyhow::anyhow!(
            "this nboost is a runtime-only build (no compiler): precompile with a full build \
             (`nboost compile`, `nboost bundle build --precompile`)"
        ),
        code: 2,
    })
}

impl CompileCommand {
    pub fn run(self, global: &GlobalArgs) -> Result<(), CliError> {
        let manifest = global.manifest().unwrap_or_default();
        let (name, path) = match manifest.components.get(&self.component) {
            Some(entry) => (entry.name.clone(), entry.path.clone()),
            None => {
                let path = PathBuf::from(&self.component);
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("component")
                    .to_string();
                (stem, path)
            }
        };
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let report = nboost::sandbox::validate_component(
            &bytes,
            nboost::sandbox::validate::DEFAULT_MAX_COMPONENT_BYTES,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let (triple, key, artifact) = artifact(global, &manifest, &bytes, self.triple.as_deref())?;
        let out = self
            .out
            .unwrap_or_else(|| PathBuf::from(format!("{name}.{triple}.cwasm")));
        nboost::fsutil::write_atomic(&out, &artifact)
            .with_context(|| format!("cannot write {}", out.display()))?;
        println!(
            "{}: `{name}` ({}) for {triple}, engine {key}, {} bytes",
            out.display(),
            report.reranker_export,
            artifact.len()
        );
        Ok(())
    }
}
