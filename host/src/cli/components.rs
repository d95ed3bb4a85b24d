//! `nboost components list | inspect | check`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use nboost::sandbox::validate::DEFAULT_MAX_COMPONENT_BYTES;
use nboost::sandbox::validate_component;

use super::{CliError, GlobalArgs};

/// Component management.
#[derive(Debug, Subcommand)]
pub enum ComponentsCommand {
    /// What the manifest names (reads no component file).
    List,
    /// World, imports, exports, size and sha256 of a manifest component.
    Inspect {
        /// Component name.
        name: String,
        /// Also instantiate it and print what `configure` reports.
        #[arg(long)]
        configure: bool,
    },
    /// Is this file a valid reranker component? Says why not.
    Check {
        /// The .wasm file.
        file: PathBuf,
    },
}

impl ComponentsCommand {
    pub fn run(self, global: &GlobalArgs) -> Result<(), CliError> {
        match self {
            Self::List => {
                let m = global.manifest()?;
                println!("{:<20} {:<12} path", "name", "graphs");
                for c in m.components.values() {
                    println!(
                        "{:<20} {:<12} {}",
                        c.name,
                        c.graphs.join(","),
                        c.path.display()
                    );
                }
                Ok(())
            }
            Self::Inspect { name, configure } => {
                let m = global.manifest()?;
                let entry = m
                    .components
                    .get(&name)
                    .ok_or_else(|| nboost::RerankError::UnknownComponent(name.clone()))?;
                let bytes = std::fs::read(&entry.path)
                    .with_context(|| format!("cannot read {}", entry.path.display()))?;
                let report =
                    validate_component(&bytes, DEFAULT_MAX_COMPONENT_BYTES).map_err(|reason| {
                        nboost::RerankError::InvalidComponent {
                            name: name.clone(),
                            reason,
                        }
                    })?;
                let mut out = serde_json::json!({
                    "name": name,
                    "path": entry.path,
                    "world": report.world,
                    "export": report.reranker_export,
                    "size": report.size,
                    "sha256": report.sha256,
                    "imports": report.imports,
                    "exports": report.exports,
                    "code": report.code,
                    "graphs": entry.graphs,
                    "settings": entry.settings.iter().map(|(k, _)| k).chain(entry.setting_files.iter().map(|(k, _)| k)).collect::<Vec<_>>(),
                });
                if configure {
                    let reranker = global.reranker()?;
                    out["model_info"] = serde_json::to_value(reranker.model_info(&name)?)
                        .map_err(anyhow::Error::from)?;
                }
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out).map_err(anyhow::Error::from)?
                );
                Ok(())
            }
            Self::Check { file } => {
                let mut config = global.config(&nboost::registry::Manifest::default());
                config.compiler = Some(global.isolated_compiler()?);
                let reranker =
                    nboost::Reranker::new(nboost::registry::Manifest::default(), config)?;
                let report = reranker
                    .registry()
                    .check_file(&file)
                    .map_err(|e| CliError {
                        err: e.into(),
                        code: 1,
                    })?;
                println!(
                    "ok: {} is a reranker component ({}, world {}, {} bytes, {})",
                    file.display(),
                    report.reranker_export,
                    report.world,
                    report.size,
                    report.sha256
                );
                Ok(())
            }
        }
    }
}
