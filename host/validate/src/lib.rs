//! `nboost-validate`: static checks on a component file, before anything
//! compiles or runs. A small crate of its own (wasmparser, sha2) so that the
//! fuzz target (`fuzz/`) builds it without wasmtime.
//!
//! Users upload components written by strangers. Before such a file reaches
//! Cranelift it must be: non-empty and within the size cap; a *component*
//! (not a core module); valid; an exporter of `nboost:reranker/reranker` at a
//! version compatible with ours; and an importer of nothing but the
//! interfaces on [`ALLOWED_IMPORTS`]. The allow-list is what the sandbox can
//! satisfy harmlessly: wasi-nn (through our back-ends) and the WASI
//! interfaces that Rust's standard library imports in every `wasm32-wasip2`
//! program (cli, io, clocks, random, filesystem; the last one with no
//! preopened directory, so it reaches nothing). Sockets, HTTP and anything
//! unknown are refused, naming each offending import.

use sha2::{Digest, Sha256};
use wasmparser::{Encoding, Parser, Payload, Validator, WasmFeatures};

/// Interface prefix and version prefix of the reranker export we accept.
pub const RERANKER_INTERFACE: &str = "nboost:reranker/reranker";
/// Compatible versions of [`RERANKER_INTERFACE`] (semver: same 0.1 line).
pub const RERANKER_VERSION_PREFIX: &str = "0.1.";

/// Imports a plugin may have: `(package/interface, version prefix)`.
pub const ALLOWED_IMPORTS: &[(&str, &str)] = &[
    ("wasi:nn/tensor", "0.2.0-rc-2024-10-28"),
    ("wasi:nn/graph", "0.2.0-rc-2024-10-28"),
    ("wasi:nn/inference", "0.2.0-rc-2024-10-28"),
    ("wasi:nn/errors", "0.2.0-rc-2024-10-28"),
    ("wasi:cli/environment", "0.2."),
    ("wasi:cli/exit", "0.2."),
    ("wasi:cli/stdin", "0.2."),
    ("wasi:cli/stdout", "0.2."),
    ("wasi:cli/stderr", "0.2."),
    ("wasi:cli/terminal-input", "0.2."),
    ("wasi:cli/terminal-output", "0.2."),
    ("wasi:cli/terminal-stdin", "0.2."),
    ("wasi:cli/terminal-stdout", "0.2."),
    ("wasi:cli/terminal-stderr", "0.2."),
    ("wasi:io/error", "0.2."),
    ("wasi:io/poll", "0.2."),
    ("wasi:io/streams", "0.2."),
    ("wasi:clocks/monotonic-clock", "0.2."),
    ("wasi:clocks/wall-clock", "0.2."),
    ("wasi:random/random", "0.2."),
    ("wasi:random/insecure", "0.2."),
    ("wasi:random/insecure-seed", "0.2."),
    ("wasi:filesystem/types", "0.2."),
    ("wasi:filesystem/preopens", "0.2."),
];

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Default cap on a component file's size: 64 MiB (MiniLM's plugin, with a
/// full tokenizer library inside, is about 3 MiB).
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 64 << 20;

/// Caps on what one file may ask the compiler to do. Cranelift's cost grows
/// faster than linearly with one function's size and locals (register
/// allocation): a 1 MB function with 4 000 locals cost 75 s of CPU. These
/// are checked before anything compiles; compilation itself then runs in a
/// subprocess under a wall-clock and memory limit (`registry::isolate`).
/// The values are about 4x the largest seen in real Rust plugins: MiniLM's
/// component (tokenizers inside) has 3 125 functions, the largest 92 KB,
/// at most 973 locals (`nboost components inspect` prints each file's
/// figures). The per-function cap is 512 KiB because a plugin written in
/// Python carries CPython, whose interpreter loop (`_PyEval_EvalFrameDefault`,
/// componentize-py 0.25) is one 417 KiB function; it compiles in seconds.
pub mod code_limits {
    /// Most function bodies in all core modules together.
    pub const MAX_FUNCTIONS: usize = 100_000;
    /// Largest one function body, in bytes.
    pub const MAX_FUNCTION_BYTES: usize = 512 << 10;
    /// Most locals one function declares.
    pub const MAX_LOCALS: u64 = 4_096;
    /// Most data segments in all core modules together.
    pub const MAX_DATA_SEGMENTS: usize = 100_000;
}

/// The compile-cost figures of a component file (see [`code_limits`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CodeStats {
    /// Function bodies, all core modules together.
    pub functions: usize,
    /// Size of the largest function body, in bytes.
    pub largest_function_bytes: usize,
    /// Most locals declared by one function.
    pub most_locals: u64,
    /// Data segments, all core modules together.
    pub data_segments: usize,
}

/// Count what matters to the compiler, and refuse files over
/// [`code_limits`], naming the function (`module M, function F`).
pub fn code_stats(bytes: &[u8]) -> Result<CodeStats, String> {
    use code_limits::*;
    let mut stats = CodeStats::default();
    let (mut module, mut function) = (0usize, 0usize);
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("invalid component: {e}"))? {
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } => {
                module += 1;
                function = 0;
            }
            Payload::CodeSectionEntry(body) => {
                function += 1;
                stats.functions += 1;
                let size = body.range().len();
                let mut locals = 0u64;
                for l in body
                    .get_locals_reader()
                    .map_err(|e| format!("invalid component: {e}"))?
                {
                    let (n, _) = l.map_err(|e| format!("invalid component: {e}"))?;
                    locals = locals.saturating_add(u64::from(n));
                }
                let at = || format!("core module {module}, function body {function}");
                if size > MAX_FUNCTION_BYTES {
                    return Err(format!(
                        "{} is {size} bytes, over the limit of {MAX_FUNCTION_BYTES} bytes per \
                         function (compile cost grows faster than function size)",
                        at()
                    ));
                }
                if locals > MAX_LOCALS {
                    return Err(format!(
                        "{} declares {locals} locals, over the limit of {MAX_LOCALS} per function",
                        at()
                    ));
                }
                stats.largest_function_bytes = stats.largest_function_bytes.max(size);
                stats.most_locals = stats.most_locals.max(locals);
                if stats.functions > MAX_FUNCTIONS {
                    return Err(format!(
                        "the component has more than {MAX_FUNCTIONS} functions"
                    ));
                }
            }
            Payload::DataSection(reader) => {
                stats.data_segments += reader.count() as usize;
                if stats.data_segments > MAX_DATA_SEGMENTS {
                    return Err(format!(
                        "the component has more than {MAX_DATA_SEGMENTS} data segments"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(stats)
}

/// What static validation learned about a component file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentReport {
    /// File size in bytes.
    pub size: usize,
    /// `sha256:<hex>` of the file.
    pub sha256: String,
    /// The exact reranker export name, e.g. `nboost:reranker/reranker@0.1.0`.
    pub reranker_export: String,
    /// The WIT world it fits: `nn-reranker-plugin` when it imports wasi-nn,
    /// else `reranker-plugin`.
    pub world: &'static str,
    /// Every top-level import name.
    pub imports: Vec<String>,
    /// Every top-level export name.
    pub exports: Vec<String>,
    /// What the compiler will face.
    pub code: CodeStats,
}

/// Check a component file; `Err` carries a message fit for a user.
///
/// Messages quote names taken from the file; control characters in them are
/// escaped, so a hostile file cannot put terminal escape sequences or fake
/// log lines into the host's output (found by the `fuzz/` target).
pub fn validate_component(bytes: &[u8], max_bytes: usize) -> Result<ComponentReport, String> {
    validate_unescaped(bytes, max_bytes).map_err(|m| escape_controls(&m))
}

/// `s` with every control character written as a Rust escape (`\u{1b}`).
pub fn escape_controls(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped = c.is_control().then(|| c.escape_default());
            escaped
                .into_iter()
                .flatten()
                .chain((!c.is_control()).then_some(c))
        })
        .collect()
}

fn validate_unescaped(bytes: &[u8], max_bytes: usize) -> Result<ComponentReport, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if bytes.len() > max_bytes {
        return Err(format!(
            "the file is {} bytes, over the {} byte limit",
            bytes.len(),
            max_bytes
        ));
    }
    if !bytes.starts_with(b"\0asm") {
        return Err("not a WebAssembly file (no `\\0asm` header)".into());
    }
    if Parser::is_core_wasm(bytes) {
        return Err(
            "this is a core WebAssembly module, not a component: build the plugin \
             with `--target wasm32-wasip2` (or wrap the module with `wasm-tools component new`)"
                .into(),
        );
    }
    let mut validator = Validator::new_with_features(WasmFeatures::default());
    validator
        .validate_all(bytes)
        .map_err(|e| format!("invalid component: {e}"))?;

    let code = code_stats(bytes)?;
    let (imports, exports) =
        top_level_names(bytes).map_err(|e| format!("invalid component: {e}"))?;

    let reranker_export = exports
        .iter()
        .find(|name| {
            name.strip_prefix(RERANKER_INTERFACE)
                .and_then(|rest| rest.strip_prefix('@'))
                .is_some_and(|v| v.starts_with(RERANKER_VERSION_PREFIX))
        })
        .cloned()
        .ok_or_else(|| {
            format!(
                "the component does not export `{RERANKER_INTERFACE}@{RERANKER_VERSION_PREFIX}x`; \
                 its exports are [{}]",
                exports.join(", ")
            )
        })?;

    let refused: Vec<&String> = imports.iter().filter(|i| !import_allowed(i)).collect();
    if !refused.is_empty() {
        return Err(format!(
            "the component imports interfaces the sandbox does not grant: [{}]",
            refused
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let world = if imports.iter().any(|i| i.starts_with("wasi:nn/")) {
        "nn-reranker-plugin"
    } else {
        "reranker-plugin"
    };
    Ok(ComponentReport {
        size: bytes.len(),
        sha256: sha256_digest(bytes),
        reranker_export,
        world,
        imports,
        exports,
        code,
    })
}

/// Whether one import name is on the allow-list.
pub fn import_allowed(name: &str) -> bool {
    let Some((iface, version)) = name.split_once('@') else {
        return false;
    };
    ALLOWED_IMPORTS
        .iter()
        .any(|(i, v)| *i == iface && version.starts_with(v))
}

/// The import and export names of the outermost component (nested modules
/// and components are skipped: their imports are satisfied inside).
fn top_level_names(bytes: &[u8]) -> wasmparser::Result<(Vec<String>, Vec<String>)> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    imports.push(import?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    exports.push(export?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_and_non_wasm() {
        assert!(validate_component(b"", 1 << 20)
            .unwrap_err()
            .contains("empty"));
        assert!(validate_component(b"hello world", 1 << 20)
            .unwrap_err()
            .contains("not a WebAssembly file"));
    }

    #[test]
    fn rejects_core_module() {
        // The smallest valid core module: magic + version 1.
        let module = b"\0asm\x01\0\0\0";
        let err = validate_component(module, 1 << 20).unwrap_err();
        assert!(err.contains("core WebAssembly module"), "{err}");
    }

    #[test]
    fn rejects_oversized_files() {
        let err = validate_component(&[0u8; 100], 10).unwrap_err();
        assert!(err.contains("over the 10 byte limit"), "{err}");
    }

    #[test]
    fn messages_escape_control_characters() {
        // Found by fuzz/: wasmparser quotes the malformed export name,
        // NULs and all, in its error.
        let bytes = b"\x00\x61\x73\x6d\x0d\x00\x01\x00\x05\x03\x01\x01\x00\x0b\x41\x02\x00\x1e\x6e\x62\x6f\x6f\x73\x74\x3a\x72\x65\x72\x61\x6e\x6b\x65\x00\x00\x00\x00\x00\x00\x00\x04\x65\x72\x40\x30\x2e\x32\x2e\x30\x05\x00\x00\x00\x18\x6e\x6f\x00\x00\x00\x00\x00\x01\x72\x72\x61\x6e\x6b\x6a\x22\x05\x28\x02\x99\x00\x00\x00\x00\x00\x00\x01\x72";
        let err = validate_component(bytes, 1 << 20).unwrap_err();
        assert!(err.contains("invalid component"), "{err}");
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert_eq!(escape_controls("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
    }

    #[test]
    fn allow_list_is_by_interface_and_version() {
        assert!(import_allowed("wasi:cli/environment@0.2.6"));
        assert!(import_allowed("wasi:nn/graph@0.2.0-rc-2024-10-28"));
        assert!(!import_allowed("wasi:nn/graph@0.3.0"));
        assert!(!import_allowed("wasi:sockets/tcp@0.2.6"));
        assert!(!import_allowed("wasi:http/outgoing-handler@0.2.6"));
        assert!(!import_allowed("wasi:cli/environment"));
        assert!(!import_allowed("evil"));
    }
}
