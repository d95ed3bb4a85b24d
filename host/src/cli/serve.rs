//! `nboost serve`: the multi-tenant HTTP server.
//!
//! Config → engine → registry of the public manifest → data directory
//! (locked: one server per directory; crash leftovers removed) → service →
//! listener. The bound address is printed on stdout as the first line
//! (`listening on http://ADDR`), so `--listen 127.0.0.1:0` works for tests
//! and scripts (with `--metrics-listen`, a `metrics on http://ADDR/metrics`
//! line comes just before it). SIGTERM or Ctrl-C stops accepting connections and drains
//! the requests in flight before the process exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nboost::api::{self, AppState, ServerConfig};
use nboost::nn::NnHost;
use nboost::registry::Registry;
use nboost::sandbox::SandboxEngine;
use nboost::service::{Service, ServiceOptions};

use super::tenants::{apply_tenants_file, DataDirArgs};
use super::{CliError, GlobalArgs};

/// Serve the HTTP API.
#[derive(Debug, Args)]
pub struct ServeCommand {
    /// Address to listen on; port 0 picks a free port (the bound address is
    /// printed on stdout).
    #[arg(long, env = "NBOOST_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    data: DataDirArgs,
    /// A tenants file (TOML: `[tenants.NAME]` with `key-sha256` and quotas),
    /// applied over the data directory at start.
    #[arg(long, env = "NBOOST_TENANTS")]
    tenants: Option<PathBuf>,
    /// Component used by requests that name none (TEI's `/rerank` has no
    /// model field).
    #[arg(long, env = "NBOOST_DEFAULT_MODEL")]
    default_model: Option<String>,
    /// Rerank calls admitted at once, server-wide; more get 429 at once.
    /// Refusing beats queueing without bound: clients can back off.
    #[arg(long, env = "NBOOST_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    max_concurrent_requests: usize,
    /// Calls that run wasm at once (default: one per core, plus one that no
    /// single tenant may take); admitted calls beyond wait in a queue.
    #[arg(long, env = "NBOOST_WORKERS")]
    workers: Option<usize>,
    /// Of the workers, the most one tenant may hold at once (default: all
    /// but one), so that no tenant can starve the others.
    #[arg(long, env = "NBOOST_WORKERS_PER_TENANT")]
    workers_per_tenant: Option<usize>,
    /// Most documents in one rerank request.
    #[arg(long, default_value_t = 1000)]
    max_documents: usize,
    /// Cap on a rerank request body, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_request_bytes: usize,
    /// Cap on a graph upload body, in bytes.
    #[arg(long, default_value_t = 512 << 20)]
    max_upload_bytes: usize,
    /// Warm instances kept per tenant and component: more cuts latency
    /// under bursts, at the memory of one instance each.
    #[arg(long, default_value_t = 4)]
    max_idle_per_component: usize,
    /// Warm instances kept in total, all tenants together.
    #[arg(long, default_value_t = 32)]
    max_idle_total: usize,
    /// Also serve `GET /metrics` without a key on this (operator-only)
    /// address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// An edge node: serve only the bundles of `--bundles` signed by a
    /// `--trusted-key` (the manifest is not read), and refuse uploads.
    #[arg(long, requires_all = ["bundles", "trusted_key"])]
    edge: bool,
    /// The directory of `*.nbb` bundles an edge node serves.
    #[arg(long, requires = "edge")]
    bundles: Option<PathBuf>,
    /// A public key whose bundles an edge node accepts (repeatable).
    #[arg(long, requires = "edge")]
    trusted_key: Vec<PathBuf>,
    /// Revoked bundle digests or key ids, one per line.
    #[arg(long, requires = "edge")]
    revoked: Option<PathBuf>,
}

/// SIGTERM or Ctrl-C.
pub(super) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!(target: "nboost::server", "shutting down: draining requests in flight");
}

impl ServeCommand {
    pub fn run(self, global: &GlobalArgs) -> Result<(), CliError> {
        let manifest = match &self.bundles {
            Some(dir) if self.edge => super::bundle::edge_manifest(
                dir,
                &self.trusted_key,
                self.revoked.as_deref(),
                &self.data.data_dir.join("bundles"),
            )?,
            _ => global.manifest()?,
        };
        let mut config = global.config(&manifest);
        if let (true, Some(dir)) = (self.edge, &self.bundles) {
            super::bundle::cache_beside(&mut config, &manifest.dir, dir);
        }
        let workers = self
            .workers
            .unwrap_or_else(|| ServiceOptions::default().workers)
            .max(1);
        let options = ServiceOptions {
            max_concurrent_requests: self.max_concurrent_requests.max(1),
            workers,
            workers_per_tenant: self
                .workers_per_tenant
                .unwrap_or_else(|| nboost::service::default_tenant_share(workers))
                .clamp(1, workers),
            max_idle_per_component: self.max_idle_per_component.max(1),
            max_idle_total: self.max_idle_total,
            max_documents: self.max_documents.max(1),
            ..ServiceOptions::default()
        };
        // Instance slots: running calls, warm ones, uploads being tried.
        config.engine.max_instances =
            (options.workers + options.max_idle_total + options.max_concurrent_uploads + 2)
                .try_into()
                .unwrap_or(u32::MAX);
        let deadline = Duration::from_millis(config.engine.limits.deadline_ms);
        let engine = SandboxEngine::new(config.engine)
            .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e:#}"))?;
        let nn = Arc::new(NnHost::new(config.nn, manifest.graphs.clone()));
        let public = manifest.components.len();
        let store = Arc::new(self.data.open(true)?);
        let registry = Registry::new(Arc::new(engine), nn, manifest, config.cache_dir)?
            .with_isolated_compiler(Some(global.isolated_compiler()?))
            .with_shared_artifacts(shared_artifacts(&store));
        if let Some(path) = &self.tenants {
            apply_tenants_file(path, &store)?;
        }
        let tenants = store.tenants()?.len();
        let store_kind = store_kind(&store);
        let service = Service::new(registry, store, options.clone());
        let state = AppState::new(
            service,
            ServerConfig {
                max_request_bytes: self.max_request_bytes,
                max_upload_bytes: self.max_upload_bytes,
                default_model: self.default_model.clone(),
                read_only: self.edge,
            },
        );

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("nboost-server")
            .build()
            .context("cannot start the async runtime")?;
        let result: anyhow::Result<()> = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(self.listen)
                .await
                .with_context(|| format!("cannot listen on {}", self.listen))?;
            let addr = listener.local_addr()?;
            use std::io::Write;
            if let Some(maddr) = self.metrics_listen {
                let mlistener = tokio::net::TcpListener::bind(maddr)
                    .await
                    .with_context(|| format!("cannot listen on {maddr}"))?;
                let bound = mlistener.local_addr()?;
                // Before the `listening on` line, which readers wait for.
                writeln!(
                    std::io::stdout().lock(),
                    "metrics on http://{bound}/metrics"
                )?;
                let app = api::metrics_router(state.clone());
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(mlistener, app).await {
                        tracing::error!(target: "nboost::server", "metrics listener: {e}");
                    }
                });
            }
            tracing::info!(
                target: "nboost::server",
                %addr,
                data_dir = %self.data.data_dir.display(),
                store = store_kind,
                public_components = public,
                tenants,
                workers = options.workers,
                max_concurrent_requests = options.max_concurrent_requests,
                "serving"
            );
            {
                let mut out = std::io::stdout().lock();
                writeln!(out, "listening on http://{addr}")?;
                out.flush()?;
            }
            api::serve(listener, state, shutdown_signal()).await?;
            Ok(())
        });
        // Calls whose clients went away still run on blocking threads; give
        // them their deadline, not forever.
        runtime.shutdown_timeout(deadline + Duration::from_secs(1));
        result?;
        eprintln!("nboost: stopped after draining requests in flight");
        Ok(())
    }
}

/// Replicas over an object store share precompiled artifacts through it.
#[cfg(feature = "shared")]
fn shared_artifacts(
    store: &Arc<nboost::store::Store>,
) -> Option<Arc<dyn nboost::registry::SharedArtifacts>> {
    struct Shared(Arc<nboost::store::Store>);
    impl nboost::registry::SharedArtifacts for Shared {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.0.blob_store().get_artifact(key).unwrap_or_else(|e| {
                tracing::warn!(target: "nboost::server", "shared artifact {key}: {e}");
                None
            })
        }
        fn put(&self, key: &str, bytes: &[u8]) {
            if let Err(e) = self.0.blob_store().put_artifact(key, bytes) {
                tracing::warn!(target: "nboost::server", "cannot share artifact {key}: {e}");
            }
        }
    }
    store
        .blob_store()
        .shares_artifacts()
        .then(|| Arc::new(Shared(store.clone())) as Arc<dyn nboost::registry::SharedArtifacts>)
}

#[cfg(not(feature = "shared"))]
fn shared_artifacts<T>(_: &T) -> Option<Arc<dyn nboost::registry::SharedArtifacts>> {
    None
}

#[cfg(feature = "uploads")]
fn store_kind(store: &nboost::store::Store) -> &'static str {
    store.kind()
}

#[cfg(not(feature = "uploads"))]
fn store_kind<T>(_: &T) -> &'static str {
    "memory"
}
