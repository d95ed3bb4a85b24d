//! Command-line front end: one struct per command, shared flags in
//! [`GlobalArgs`]. Only this layer reads flags, environment and input files;
//! everything below works on typed values.

mod bundle;
mod compile;
mod components;
#[cfg(feature = "eval")]
mod eval;
#[cfg(feature = "shared")]
mod migrate;
mod new;
mod oci;
mod proxy;
mod rerank;
mod serve;
mod tenants;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use nboost::nn::{BackendKind, NnOptions, Target};

/// `--backend`: the clap face of [`BackendKind`] (the library has no clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    /// tract: pure Rust, always compiled in, no shared library needed.
    Tract,
    /// ONNX Runtime, loaded at run time from `libonnxruntime.so`.
    Ort,
    /// OpenVINO, loaded at run time from `libopenvino_c.so`.
    Openvino,
}

impl From<BackendArg> for BackendKind {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Tract => BackendKind::Tract,
            BackendArg::Ort => BackendKind::Ort,
            BackendArg::Openvino => BackendKind::Openvino,
        }
    }
}

/// `--merge-computes`: whether concurrent small computes of one graph merge
/// into one back-end call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MergeArg {
    /// On for ONNX Runtime and OpenVINO, off for tract (where it measured
    /// no gain: tract's cost per row does not fall with the batch).
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// `--target`: the clap face of [`Target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TargetArg {
    /// Host CPU.
    Cpu,
    /// A GPU (CUDA for ONNX Runtime, `GPU` device for OpenVINO).
    Gpu,
}

impl From<TargetArg> for Target {
    fn from(t: TargetArg) -> Self {
        match t {
            TargetArg::Cpu => Target::Cpu,
            TargetArg::Gpu => Target::Gpu,
        }
    }
}
use nboost::registry::Manifest;
use nboost::sandbox::EngineOptions;
use nboost::service::{Reranker, RerankerConfig};
use nboost::RerankError;

/// nboost: rerank search results with sandboxed WebAssembly model plugins.
#[derive(Debug, Parser)]
#[command(name = "nboost", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command shares.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The component manifest.
    #[arg(
        long,
        global = true,
        env = "NBOOST_MANIFEST",
        default_value = "nboost.toml"
    )]
    manifest: PathBuf,
    /// Engine that runs ONNX graphs for wasi-nn.
    #[arg(
        long,
        global = true,
        env = "NBOOST_BACKEND",
        value_enum,
        default_value = "tract"
    )]
    backend: BackendArg,
    /// Device for the graphs.
    #[arg(
        long,
        global = true,
        env = "NBOOST_TARGET",
        value_enum,
        default_value = "cpu"
    )]
    target: TargetArg,
    /// Threads one inference may use (default: all cores).
    #[arg(long, global = true, env = "NBOOST_THREADS")]
    threads: Option<usize>,
    /// Merge concurrent small computes of the same graph into one back-end
    /// call (see README "Merging concurrent requests").
    #[arg(
        long,
        global = true,
        env = "NBOOST_MERGE_COMPUTES",
        value_enum,
        default_value = "auto"
    )]
    merge_computes: MergeArg,
    /// Path of libonnxruntime.so for `--backend ort`.
    #[arg(long, global = true, env = "ORT_DYLIB_PATH")]
    ort_library: Option<PathBuf>,
    /// Directory of libopenvino_c.so for `--backend openvino`.
    #[arg(long, global = true, env = "OPENVINO_LIB_DIR")]
    openvino_library: Option<PathBuf>,
    /// Where compiled components are cached (default: .nboost-cache next to
    /// the manifest).
    #[arg(long, global = true, env = "NBOOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the compiled-component cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Per-call deadline in ms (host maximum).
    #[arg(long, global = true, env = "NBOOST_DEADLINE_MS")]
    deadline_ms: Option<u64>,
    /// Per-instance memory cap in MiB (host maximum).
    #[arg(long, global = true, env = "NBOOST_MEMORY_MIB")]
    memory_mib: Option<u64>,
    /// Per-call instruction budget (wasmtime fuel); off by default.
    #[arg(long, global = true, env = "NBOOST_FUEL")]
    fuel: Option<u64>,
    /// Wall-clock limit on compiling one uploaded or checked component, in
    /// ms (it compiles in a subprocess that is killed past this).
    #[arg(
        long,
        global = true,
        env = "NBOOST_COMPILE_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    compile_timeout_ms: u64,
    /// Memory limit of that compile subprocess, in MiB.
    #[arg(
        long,
        global = true,
        env = "NBOOST_COMPILE_MEMORY_MIB",
        default_value_t = 2048
    )]
    compile_memory_mib: u64,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Rerank passages for a query with a named component.
    Rerank(rerank::RerankCommand),
    /// List, inspect and check components.
    #[command(subcommand)]
    Components(components::ComponentsCommand),
    /// Retrieval quality: BM25 top-k, reranked, scored against qrels.
    #[cfg(feature = "eval")]
    Eval(eval::EvalCommand),
    /// Retrieval quality (not in this build: rebuild with `--features eval`).
    #[cfg(not(feature = "eval"))]
    Eval {
        /// Ignored: the command is not built in.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Throughput of one component on a fixed request.
    Bench(rerank::BenchCommand),
    /// Compile a component ahead of time for this host or another target
    /// (what `bundle build --precompile` puts in a bundle).
    Compile(compile::CompileCommand),
    /// Serve the multi-tenant HTTP API (rerank, uploads, metrics).
    Serve(serve::ServeCommand),
    /// Rerank the search hits of an Elasticsearch/OpenSearch node: a
    /// proxy between a search client and the engine.
    Proxy(proxy::ProxyCommand),
    /// Signing keys for bundles.
    #[command(subcommand)]
    Keys(bundle::KeysCommand),
    /// Signed bundles for edge nodes: build, sign, verify, inspect.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Scaffold a new plugin (a component that builds and passes
    /// `nboost components test` as generated).
    #[command(subcommand)]
    New(new::NewCommand),
    /// Add tenants, rotate their keys, set their quotas.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Apply the shared database's schema migrations (replicas over
    /// PostgreSQL; `serve` also applies them at start).
    #[cfg(feature = "shared")]
    Migrate(migrate::MigrateCommand),
    /// The WIT contract (`nboost:reranker`) in an OCI registry, in `wkg`'s
    /// layout: push, pull.
    #[command(subcommand)]
    Wit(oci::WitCommand),
}

/// A CLI failure: a message and an exit code.
#[derive(Debug)]
pub struct CliError {
    err: anyhow::Error,
    code: u8,
}

impl CliError {
    /// Process exit code: 2 for the caller's mistakes, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        self.code
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if f.alternate() {
            write!(f, "{:#}", self.err)
        } else {
            write!(f, "{}", self.err)
        }
    }
}

impl From<RerankError> for CliError {
    fn from(e: RerankError) -> Self {
        let code = if e.is_client_error() { 2 } else { 1 };
        Self {
            err: e.into(),
            code,
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(err: anyhow::Error) -> Self {
        Self { err, code: 1 }
    }
}

impl Cli {
    /// Run the chosen command.
    pub fn run(self) -> Result<(), CliError> {
        match self.command {
            Command::Rerank(c) => c.run(&self.global),
            Command::Components(c) => c.run(&self.global),
            #[cfg(feature = "eval")]
            Command::Eval(c) => c.run(&self.global),
            #[cfg(not(feature = "eval"))]
            Command::Eval { .. } => Err(CliError {
                err: anyhow::anyhow!(
                    "this nboost was built without `eval`; build it with `cargo build --features eval` \
                     (or run `./just eval`)"
                ),
                code: 2,
            }),
            Command::Bench(c) => c.run(&self.global),
            Command::Compile(c) => c.run(&self.global),
            Command::Serve(c) => c.run(&self.global),
            Command::Proxy(c) => c.run(&self.global),
            Command::Keys(c) => c.run(),
            Command::Bundle(c) => c.run(&self.global),
            Command::New(c) => c.run(),
            Command::Tenants(c) => c.run(),
            #[cfg(feature = "shared")]
            Command::Migrate(c) => c.run(),
            Command::Wit(c) => c.run(),
        }
    }
}

impl GlobalArgs {
    fn config(&self, manifest: &Manifest) -> RerankerConfig {
        let mut engine = EngineOptions::default();
        if let Some(ms) = self.deadline_ms {
            engine.limits.deadline_ms = ms.max(1);
        }
        if let Some(mib) = self.memory_mib {
            engine.limits.max_memory_bytes = mib.max(1) << 20;
        }
        engine.limits.fuel_per_call = self.fuel;
        let mut nn = NnOptions {
            backend: self.backend.into(),
            target: self.target.into(),
            ort_library: self.ort_library.clone(),
            openvino_library: self.openvino_library.clone(),
            merge_computes: match self.merge_computes {
                MergeArg::On => Some(true),
                MergeArg::Off => Some(false),
                MergeArg::Auto => None,
            },
            ..NnOptions::default()
        };
        if let Some(t) = self.threads {
            nn.threads = t.max(1);
        }
        let cache_dir = (!self.no_cache).then(|| {
            self.cache_dir
                .clone()
                .unwrap_or_else(|| manifest.dir.join(".nboost-cache"))
        });
        nn.graph_cache = cache_dir.as_ref().map(|d| d.join("graphs"));
        RerankerConfig {
            engine,
            nn,
            cache_dir,
            max_idle_per_component: 4,
            compiler: None,
        }
    }

    /// The compile subprocess for files from outside the manifest.
    fn isolated_compiler(&self) -> Result<nboost::registry::IsolatedCompiler, CliError> {
        let mut c = nboost::registry::IsolatedCompiler::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find the nboost executable: {e}"))?;
        c.timeout = std::time::Duration::from_millis(self.compile_timeout_ms.max(1));
        c.memory_bytes = self.compile_memory_mib.max(64) << 20;
        Ok(c)
    }

    /// Load the manifest.
    fn manifest_exists(&self) -> bool {
        self.manifest.is_file()
    }

    /// Where verified bundles are unpacked for reuse: `--cache-dir`'s
    /// `bundles/`, else `.nboost-cache/bundles` beside the bundle; none
    /// with `--no-cache`.
    fn bundle_cache(&self, beside: &std::path::Path) -> Option<PathBuf> {
        (!self.no_cache).then(|| {
            self.cache_dir
                .clone()
                .unwrap_or_else(|| beside.join(".nboost-cache"))
                .join("bundles")
        })
    }

    fn manifest(&self) -> Result<Manifest, CliError> {
        Ok(Manifest::load(&self.manifest)?)
    }

    /// A reranker over the part of the manifest component `name` needs
    /// ([`Manifest::load_for`]): one component's start does not pay for
    /// the others declared.
    fn reranker_for(&self, name: &str) -> Result<Reranker, CliError> {
        let manifest = Manifest::load_for(&self.manifest, name)?;
        let config = self.config(&manifest);
        Ok(Reranker::new(manifest, config)?)
    }

    /// Load the manifest and build a reranker over it.
    fn reranker(&self) -> Result<Reranker, CliError> {
        let manifest = self.manifest()?;
        let config = self.config(&manifest);
        Ok(Reranker::new(manifest, config)?)
    }
}

/// Log to stderr; `RUST_LOG` wins over `-v`.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug,cranelift_codegen=info,wasmtime_cranelift=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
