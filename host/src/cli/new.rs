//! `nboost new component NAME [--lang rust|python|js]`: a working plugin to
//! start from — the contract (`wit/`, vendored from this host's own), a
//! build that makes a component with the language's standard component
//! tooling (cargo, componentize-py, componentize-js), a native unit test, a
//! manifest snippet. It builds and passes
//! `nboost components test` unmodified (tests/scaffold.rs proves it).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use super::CliError;

/// Scaffolds.
#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// A reranker component.
    Component {
        /// Its name (lower-case letters and digits, words joined by `-`).
        name: String,
        /// The language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// Where its directory goes.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// What it starts as: a self-contained scorer, or an ONNX
        /// bi-encoder run through the host's wasi-nn back-ends.
        #[arg(long, value_enum, default_value = "overlap")]
        template: Template,
        /// `bi-encoder`: the ONNX graph (e.g. `models/.../model.onnx`).
        #[arg(long, required_if_eq("template", "bi-encoder"))]
        graph: Option<PathBuf>,
        /// `bi-encoder`: its `tokenizer.json` (BERT WordPiece).
        #[arg(long, required_if_eq("template", "bi-encoder"))]
        tokenizer: Option<PathBuf>,
    },
}

/// Scaffold templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Template {
    /// Query-word overlap: no model, the smallest working plugin.
    Overlap,
    /// A BERT bi-encoder over an ONNX graph through wasi-nn (mean pooling,
    /// cosine): JavaScript only (Rust: start from `components/minilm`).
    BiEncoder,
}

/// Scaffold languages.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Lang {
    /// Rust with wit-bindgen, built for wasm32-wasip2.
    Rust,
    /// Python, built with componentize-py (`--stub-wasi`: imports nothing).
    Python,
    /// JavaScript, built with componentize-js.
    Js,
}

impl Lang {
    /// The files of this language's scaffold (templates).
    fn templates(
        self,
        template: Template,
    ) -> anyhow::Result<&'static [(&'static str, &'static str)]> {
        Ok(match (self, template) {
            (Lang::Rust, Template::Overlap) => &RUST,
            (Lang::Python, Template::Overlap) => &PYTHON,
            (Lang::Js, Template::Overlap) => &JS,
            (Lang::Js, Template::BiEncoder) => &JS_BI_ENCODER,
            (Lang::Rust, Template::BiEncoder) => anyhow::bail!(
                "the bi-encoder template is JavaScript only; a Rust one starts from \
                 components/minilm in the nboost repository (`--lang js` scaffolds it)"
            ),
            (Lang::Python, Template::BiEncoder) => anyhow::bail!(
                "a Python plugin cannot call wasi:nn: componentize-py's CPython imports \
                 wasi:sockets, which the sandbox refuses, and --stub-wasi, which removes them, \
                 stubs wasi:nn too; use `--lang js`"
            ),
        })
    }

    /// What to run next, in the new directory.
    fn next_steps(self, crate_file: &str, name: &str) -> String {
        match self {
            Lang::Rust => format!(
                "cargo build --release --target wasm32-wasip2\n  \
                 nboost components test target/wasm32-wasip2/release/{crate_file}.wasm"
            ),
            Lang::Python => format!("bash build.sh\n  nboost components test {name}.wasm"),
            Lang::Js => {
                format!("npm install && npm run build\n  nboost components test {name}.wasm")
            }
        }
    }
}

/// The contract, as this host was built with it.
const WIT: [(&str, &str); 2] = [
    (
        "wit/reranker.wit",
        include_str!("../../../wit/reranker.wit"),
    ),
    (
        "wit/deps/nn/wasi-nn.wit",
        include_str!("../../../wit/deps/nn/wasi-nn.wit"),
    ),
];

const RUST: [(&str, &str); 5] = [
    ("Cargo.toml", include_str!("scaffold/rust/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("scaffold/rust/lib.rs.tmpl")),
    ("README.md", include_str!("scaffold/rust/README.md.tmpl")),
    (
        "manifest-snippet.toml",
        include_str!("scaffold/rust/manifest-snippet.toml.tmpl"),
    ),
    (".gitignore", "target/\n"),
];

const PYTHON: [(&str, &str); 7] = [
    ("app.py", include_str!("scaffold/python/app.py.tmpl")),
    (
        "overlap.py",
        include_str!("scaffold/python/overlap.py.tmpl"),
    ),
    (
        "test_overlap.py",
        include_str!("scaffold/python/test_overlap.py.tmpl"),
    ),
    ("build.sh", include_str!("scaffold/python/build.sh.tmpl")),
    ("README.md", include_str!("scaffold/python/README.md.tmpl")),
    (
        "manifest-snippet.toml",
        include_str!("scaffold/python/manifest-snippet.toml.tmpl"),
    ),
    (".gitignore", include_str!("scaffold/python/gitignore.tmpl")),
];

const JS: [(&str, &str); 7] = [
    ("reranker.js", include_str!("scaffold/js/reranker.js.tmpl")),
    ("overlap.js", include_str!("scaffold/js/overlap.js.tmpl")),
    (
        "overlap.test.js",
        include_str!("scaffold/js/overlap.test.js.tmpl"),
    ),
    (
        "package.json",
        include_str!("scaffold/js/package.json.tmpl"),
    ),
    ("README.md", include_str!("scaffold/js/README.md.tmpl")),
    (
        "manifest-snippet.toml",
        include_str!("scaffold/js/manifest-snippet.toml.tmpl"),
    ),
    (".gitignore", include_str!("scaffold/js/gitignore.tmpl")),
];

/// The JavaScript bi-encoder: the code of `components/js-minilm` itself
/// (tested there against the Rust `minilm`), with its own build and test.
const JS_BI_ENCODER: [(&str, &str); 9] = [
    (
        "minilm.js",
        include_str!("../../../components/js-minilm/minilm.js"),
    ),
    (
        "wordpiece.js",
        include_str!("../../../components/js-minilm/wordpiece.js"),
    ),
    (
        "unicode.js",
        include_str!("../../../components/js-minilm/unicode.js"),
    ),
    (
        "wordpiece.test.js",
        include_str!("scaffold/js-bi-encoder/wordpiece.test.js.tmpl"),
    ),
    (
        "package.json",
        include_str!("scaffold/js-bi-encoder/package.json.tmpl"),
    ),
    (
        "README.md",
        include_str!("scaffold/js-bi-encoder/README.md.tmpl"),
    ),
    (
        "manifest-snippet.toml",
        include_str!("scaffold/js-bi-encoder/manifest-snippet.toml.tmpl"),
    ),
    (".gitignore", include_str!("scaffold/js/gitignore.tmpl")),
    (
        "tools/unicode_tables.py",
        include_str!("../../../tools/unicode_tables.py"),
    ),
];

fn absolute(flag: &str, path: Option<&Path>) -> anyhow::Result<String> {
    let Some(path) = path else {
        return Ok(String::new());
    };
    let abs =
        std::fs::canonicalize(path).with_context(|| format!("--{flag} {}", path.display()))?;
    Ok(abs.display().to_string())
}

fn check(name: &str) -> anyhow::Result<()> {
    // The rule every component name follows (manifest, uploads).
    nboost::names::check_name(name).map_err(|e| anyhow::anyhow!("`{name}`: {e}"))
}

fn write_all(root: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    for (rel, text) in files {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

impl NewCommand {
    pub fn run(self) -> Result<(), CliError> {
        let Self::Component {
            name,
            lang,
            dir,
            template,
            graph,
            tokenizer,
        } = self;
        check(&name)?;
        let templates = lang.templates(template)?;
        let graph = absolute("graph", graph.as_deref())?;
        let tokenizer = absolute("tokenizer", tokenizer.as_deref())?;
        let root = dir.join(&name);
        if root.exists()
            && std::fs::read_dir(&root)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(anyhow::anyhow!("{} exists and is not empty", root.display()).into());
        }
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let abs = std::fs::canonicalize(&root)
            .with_context(|| format!("cannot resolve {}", root.display()))?;
        let crate_name = format!("nboost-reranker-{name}");
        let crate_file = crate_name.replace('-', "_");
        let fill = |t: &str| {
            t.replace("{{name}}", &name)
                .replace("{{crate}}", &crate_name)
                .replace("{{crate_file}}", &crate_file)
                .replace("{{dir}}", &abs.display().to_string())
                .replace("{{graph}}", &graph)
                .replace("{{tokenizer}}", &tokenizer)
        };
        let mut files: Vec<(&str, String)> = WIT.iter().map(|(p, t)| (*p, t.to_string())).collect();
        files.extend(templates.iter().map(|(p, t)| (*p, fill(t))));
        write_all(&root, &files)?;
        println!(
            "created {} ({} files)\n  cd {}\n  {}",
            root.display(),
            files.len(),
            root.display(),
            lang.next_steps(&crate_file, &name)
        );
        Ok(())
    }
}
