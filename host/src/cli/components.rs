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
    /// Run the contract suite (wit/reranker.wit's promises) on a component
    /// file, or a manifest component, before it is uploaded: one line per
    /// check; exit 1 when any fails.
    Test {
        /// A .wasm file, or the name of a manifest component.
        #[arg(value_name = "FILE.wasm|NAME")]
        component: String,
        /// A setting for `configure`, `KEY=VALUE` (repeatable; a file's
        /// own settings).
        #[arg(long = "setting", value_parser = key_value)]
        settings: Vec<(String, String)>,
        /// A setting whose value is a file's text, `KEY=PATH` (e.g.
        /// `tokenizer=models/all-MiniLM-L6-v2/tokenizer.json`).
        #[arg(long = "setting-file", value_parser = key_value)]
        setting_files: Vec<(String, String)>,
        /// A graph of the manifest the component may load (repeatable).
        #[arg(long = "graph")]
        graphs: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Push a component file to an OCI registry as a Wasm OCI artifact
    /// (validated first).
    Push {
        /// The .wasm file.
        file: PathBuf,
        /// Where to: `registry/repository:tag`.
        reference: String,
        #[command(flatten)]
        registry: super::oci::RegistryArgs,
    },
    /// Pull a component from an OCI registry; written only if it passes
    /// validation (exit 3 otherwise).
    Pull {
        /// From where (`…:tag`, or `…@sha256:…` to pin it).
        reference: String,
        /// The .wasm file to write.
        #[arg(long, short)]
        out: PathBuf,
        #[command(flatten)]
        registry: super::oci::RegistryArgs,
    },
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, not `{s}`"))
}

impl ComponentsCommand {
    pub fn run(self, global: &GlobalArgs) -> Result<(), CliError> {
        match self {
            Self::Push {
                file,
                reference,
                registry,
            } => super::oci::push_component(&file, &reference, &registry),
            Self::Pull {
                reference,
                out,
                registry,
            } => super::oci::pull_component(&reference, &out, &registry),
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
            Self::Test {
                component,
                settings,
                setting_files,
                graphs,
                json,
            } => test(global, &component, settings, setting_files, graphs, json),
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

/// The name a file under test gets in the in-memory manifest.
const UNDER_TEST: &str = "under-test";

fn test(
    global: &GlobalArgs,
    target: &str,
    settings: Vec<(String, String)>,
    setting_files: Vec<(String, String)>,
    graphs: Vec<String>,
    json: bool,
) -> Result<(), CliError> {
    let is_file = target.ends_with(".wasm") || std::path::Path::new(target).is_file();
    // A file with no graphs needs no manifest: a plugin author's checkout
    // may have none.
    let mut manifest = if is_file && graphs.is_empty() && !global.manifest_exists() {
        // Relative paths (and the compile cache) beside the file.
        let dir = std::path::Path::new(target)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf();
        nboost::registry::Manifest {
            dir,
            ..Default::default()
        }
    } else {
        global.manifest()?
    };
    let mut config = global.config(&manifest);
    let name = if is_file {
        for g in &graphs {
            if !manifest.graphs.iter().any(|s| &s.name == g) {
                return Err(
                    anyhow::anyhow!("--graph {g}: the manifest declares no such graph").into(),
                );
            }
        }
        let path =
            std::fs::canonicalize(target).with_context(|| format!("cannot read {target}"))?;
        manifest.components.insert(
            UNDER_TEST.into(),
            nboost::registry::ComponentEntry {
                name: UNDER_TEST.into(),
                path,
                sha256: None,
                description: None,
                graphs,
                settings,
                setting_files: setting_files
                    .into_iter()
                    .map(|(k, v)| (k, PathBuf::from(v)))
                    .collect(),
                limits: Default::default(),
                fusion: None,
                precompiled: None,
                preinit: Default::default(),
            },
        );
        // A file from outside the manifest: compiled like an upload.
        config.compiler = Some(global.isolated_compiler()?);
        UNDER_TEST.to_string()
    } else {
        if !(settings.is_empty() && setting_files.is_empty() && graphs.is_empty()) {
            return Err(anyhow::anyhow!(
                "--setting, --setting-file and --graph are for a .wasm file; `{target}` is a \
                 manifest component with its own"
            )
            .into());
        }
        target.to_string()
    };
    let checks = nboost::contract::run(&manifest, &name, &config)?;
    let failed = checks.iter().filter(|c| !c.ok).count();
    if json {
        let out = serde_json::json!({"component": target, "passed": failed == 0, "checks": checks});
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(anyhow::Error::from)?
        );
    } else {
        for c in &checks {
            println!(
                "{} {}: {}",
                if c.ok { "pass" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        println!(
            "{}: {} of {} checks passed",
            target,
            checks.len() - failed,
            checks.len()
        );
    }
    if failed > 0 {
        return Err(CliError {
            err: anyhow::anyhow!("{failed} contract check(s) failed"),
            code: 1,
        });
    }
    Ok(())
}
