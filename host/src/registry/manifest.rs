//! The manifest: which components and graphs exist, as pure data.
//!
//! `nboost.toml` plays the role NBoost's `CLASS_MAP` played: it names what
//! *could* be loaded. Parsing it touches no component file; a request for
//! component X later reads, validates and compiles X alone. Unknown keys are
//! errors (a typo must not silently drop a limit), names are checked, and
//! relative paths resolve against the manifest's directory.
//!
//! ```toml
//! [graphs.all-minilm-l6-v2]
//! path = "models/all-MiniLM-L6-v2/model.onnx"   # ONNX file
//! # sha256 = "sha256:..."                        # optional pin
//!
//! [components.minilm]
//! path = "components/target/wasm32-wasip2/release/nboost_reranker_minilm.wasm"
//! graphs = ["all-minilm-l6-v2"]                  # what wasi-nn may load
//! settings = { graph = "all-minilm-l6-v2" }      # passed to `configure`
//! setting-files = { tokenizer = "models/all-MiniLM-L6-v2/tokenizer.json" }
//! limits = { deadline-ms = 5000 }                # narrows host limits
//! preinit = true                                 # start instances configured
//! ```

use crate::names::{check_alias, check_name};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::fusion::Fusion;
use crate::nn::GraphSpec;
use crate::sandbox::{LimitsOverride, Preinit};
use crate::RerankError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    graphs: BTreeMap<String, RawGraph>,
    #[serde(default)]
    components: BTreeMap<String, RawComponent>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawGraph {
    /// `path = "models/x/model.onnx"`
    path: PathBuf,
    /// `sha256 = "sha256:<hex>"`
    sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawComponent {
    /// `path = "x.wasm"`
    path: PathBuf,
    /// `sha256 = "sha256:<hex>"`
    sha256: Option<String>,
    /// `description = "..."`
    description: Option<String>,
    /// `graphs = ["name", ...]`
    #[serde(default)]
    graphs: Vec<String>,
    /// `settings = { key = "value" }`
    #[serde(default)]
    settings: toml::Table,
    /// `setting-files = { key = "path" }`: the file's text becomes the value.
    #[serde(default)]
    setting_files: BTreeMap<String, PathBuf>,
    /// `limits = { deadline-ms = 2000, memory-mib = 256 }`
    #[serde(default)]
    limits: LimitsOverride,
    /// `fusion = { method = "rrf", k = 60 }`: its default fusion.
    fusion: Option<Fusion>,
    /// `preinit = true`: snapshot it after `configure` once and start every
    /// instance from the snapshot (`sandbox::preinit`).
    #[serde(default)]
    preinit: bool,
}

/// One component as the manifest declares it (paths resolved).
#[derive(Debug, Clone)]
pub struct ComponentEntry {
    /// Its name.
    pub name: String,
    /// The `.wasm` file.
    pub path: PathBuf,
    /// Pinned digest, if any.
    pub sha256: Option<String>,
    /// Operator's description.
    pub description: Option<String>,
    /// Named graphs its wasi-nn calls may load.
    pub graphs: Vec<String>,
    /// Literal settings, in manifest order.
    pub settings: Vec<(String, String)>,
    /// Settings whose value is a file's text (read when the component loads).
    pub setting_files: Vec<(String, PathBuf)>,
    /// Its limit overrides.
    pub limits: LimitsOverride,
    /// Its default fusion with first-stage scores.
    pub fusion: Option<Fusion>,
    /// Its code compiled ahead of time for this host, from a verified
    /// bundle only (never from a manifest file: see
    /// [`crate::bundle::PartKind::Precompiled`]).
    pub precompiled: Option<PathBuf>,
    /// Whether instances start from a pre-initialised image.
    pub preinit: Preinit,
}

/// The parsed, checked manifest.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Directory relative paths were resolved against.
    pub dir: PathBuf,
    /// Declared graphs.
    pub graphs: Vec<GraphSpec>,
    /// Declared components, by name.
    pub components: BTreeMap<String, ComponentEntry>,
    /// Other names of declared components (alias → component).
    pub aliases: BTreeMap<String, String>,
}

/// The directory a manifest's relative paths are resolved against.
fn manifest_dir(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

fn setting_value(key: &str, v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!(
            "setting `{key}` must be a string, number or boolean"
        )),
    }
}

impl Manifest {
    /// Read and check a manifest file.
    pub fn load(path: &Path) -> Result<Self, RerankError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RerankError::Manifest(format!("cannot read {}: {e}", path.display())))?;
        let dir = manifest_dir(path);
        Self::parse(&text, &dir)
            .map_err(|e| RerankError::Manifest(format!("{}: {e}", path.display())))
    }

    /// Read a manifest for component (or alias) `name` alone: only its
    /// table, its graphs and its alias are parsed when the file's layout
    /// allows ([`super::scan`]), so the cost does not grow with the
    /// entries declared; otherwise, or when that part is not enough, the
    /// whole file, as [`Manifest::load`].
    pub fn load_for(path: &Path, name: &str) -> Result<Self, RerankError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RerankError::Manifest(format!("cannot read {}: {e}", path.display())))?;
        let dir = manifest_dir(path);
        if let Some(part) = super::scan::reduced(&text, name) {
            if let Ok(m) = Self::parse(&part, &dir) {
                return Ok(m);
            }
        }
        Self::parse(&text, &dir)
            .map_err(|e| RerankError::Manifest(format!("{}: {e}", path.display())))
    }

    /// Parse manifest text, resolving paths against `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Self, String> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut graphs = Vec::new();
        for (name, g) in raw.graphs {
            check_name(&name).map_err(|e| format!("[graphs.{name}]: {e}"))?;
            graphs.push(GraphSpec {
                name,
                path: dir.join(g.path),
                sha256: g.sha256,
                prepared: None,
            });
        }
        let mut components = BTreeMap::new();
        for (name, c) in raw.components {
            check_name(&name).map_err(|e| format!("[components.{name}]: {e}"))?;
            for g in &c.graphs {
                if !graphs.iter().any(|s| &s.name == g) {
                    return Err(format!(
                        "[components.{name}]: graph `{g}` is not declared under [graphs]"
                    ));
                }
            }
            if let Some(f) = &c.fusion {
                f.check().map_err(|e| format!("[components.{name}]: {e}"))?;
            }
            let settings = c
                .settings
                .iter()
                .map(|(k, v)| setting_value(k, v).map(|v| (k.clone(), v)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("[components.{name}]: {e}"))?;
            components.insert(
                name.clone(),
                ComponentEntry {
                    name,
                    path: dir.join(c.path),
                    sha256: c.sha256,
                    description: c.description,
                    graphs: c.graphs,
                    settings,
                    setting_files: c
                        .setting_files
                        .into_iter()
                        .map(|(k, p)| (k, dir.join(p)))
                        .collect(),
                    limits: c.limits,
                    fusion: c.fusion,
                    precompiled: None,
                    preinit: if c.preinit {
                        Preinit::Snapshot
                    } else {
                        Preinit::Off
                    },
                },
            );
        }
        for (alias, target) in &raw.aliases {
            check_alias(alias).map_err(|e| format!("[aliases]: {e}"))?;
            if components.contains_key(alias) {
                return Err(format!(
                    "[aliases]: `{alias}` is a component's name; an alias may not shadow it"
                ));
            }
            if !components.contains_key(target) {
                return Err(format!(
                    "[aliases]: `{alias}` names `{target}`, which is not declared under [components]"
                ));
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            graphs,
            components,
            aliases: raw.aliases,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves_paths() {
        let m = Manifest::parse(
            r#"
            [graphs.g1]
            path = "m/model.onnx"
            [components.lexical]
            path = "lex.wasm"
            settings = { k1 = 1.5, b = "0.7" }
            [components.nn]
            path = "/abs/nn.wasm"
            graphs = ["g1"]
            setting-files = { tokenizer = "m/tokenizer.json" }
            limits = { deadline-ms = 100 }
            "#,
            Path::new("/base"),
        )
        .unwrap();
        let lex = &m.components["lexical"];
        assert_eq!(lex.path, Path::new("/base/lex.wasm"));
        assert!(lex.settings.contains(&("k1".into(), "1.5".into())));
        let nn = &m.components["nn"];
        assert_eq!(nn.path, Path::new("/abs/nn.wasm"));
        assert_eq!(nn.setting_files[0].1, Path::new("/base/m/tokenizer.json"));
        assert_eq!(nn.limits.deadline_ms, Some(100));
    }

    #[test]
    fn rejects_unknown_keys_bad_names_and_undeclared_graphs() {
        let dir = Path::new("/");
        let e =
            Manifest::parse("[components.x]\npath='a'\n[aliases]\n'r-1.0'='y'\n", dir).unwrap_err();
        assert!(
            e.contains("`r-1.0` names `y`, which is not declared"),
            "{e}"
        );
        let e = Manifest::parse("[components.x]\npath='a'\n[aliases]\nx='x'\n", dir).unwrap_err();
        assert!(e.contains("may not shadow"), "{e}");
        let m = Manifest::parse("[components.x]\npath='a'\n[aliases]\n'a/B.1'='x'\n", dir).unwrap();
        assert_eq!(m.aliases["a/B.1"], "x");
        let e = Manifest::parse("[components.x]\npath='a'\ntimeout=3\n", dir).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = Manifest::parse("[components.My_X]\npath='a'\n", dir).unwrap_err();
        assert!(e.contains("may only hold"), "{e}");
        let e = Manifest::parse("[components.x]\npath='a'\ngraphs=['g']\n", dir).unwrap_err();
        assert!(e.contains("not declared"), "{e}");
        let e = Manifest::parse("[components.x]\npath='a'\nsettings={a=[1]}\n", dir).unwrap_err();
        assert!(e.contains("must be a string"), "{e}");
    }
}
