//! `nboost proxy`: the Elasticsearch/OpenSearch reranking proxy.
//!
//! Manifest → reranker (the operator's service) → the component and each
//! allowed one loaded and configured once, so a broken setup fails here
//! and not on the first search → listener. Like `serve`, the bound address
//! is the first line on stdout (`listening on http://ADDR`), and SIGTERM
//! or Ctrl-C drains the requests in flight.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nboost::fusion::Fusion;
use nboost::proxy::{self, Proxy, ProxyConfig};

use super::serve::shutdown_signal;
use super::{CliError, GlobalArgs};

/// Rerank the search hits of an Elasticsearch/OpenSearch node.
#[derive(Debug, Args)]
pub struct ProxyCommand {
    /// The search engine's URL (a path prefix is kept).
    #[arg(long, env = "NBOOST_UPSTREAM")]
    upstream: reqwest::Url,
    /// The component that reranks (from the manifest).
    #[arg(long, short, env = "NBOOST_COMPONENT")]
    component: String,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "NBOOST_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// How many upstream hits are reranked per search.
    #[arg(long, default_value_t = 50)]
    topn: usize,
    /// The largest `nboost.topn` a request may ask for.
    #[arg(long, default_value_t = 200)]
    max_topn: usize,
    /// The `_source` fields a hit is scored on, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "title,text")]
    fields: Vec<String>,
    /// Other components a request may pick with `nboost.component`,
    /// comma-separated.
    #[arg(long, value_delimiter = ',')]
    allow_components: Vec<String>,
    /// Fusion of model and upstream scores, as JSON (e.g.
    /// `{"method":"rrf","k":60}` or `{"method":"none"}`); default: the
    /// component's, else a z-score mix with the model's weight 0.8.
    #[arg(long, value_parser = parse_fusion)]
    fusion: Option<Fusion>,
    /// A failed, late or refused rerank answers 502 instead of the
    /// upstream order.
    #[arg(long)]
    strict: bool,
    /// Most bytes of one upstream search answer held in memory; larger
    /// answers pass through un-reranked.
    #[arg(long, default_value_t = 4 << 20)]
    max_response_bytes: usize,
    /// Most bytes of a search request body read; larger searches pass
    /// through un-reranked.
    #[arg(long, default_value_t = 1 << 20)]
    max_request_bytes: usize,
    /// Longest wait for one rerank before answering in the upstream order.
    #[arg(long, default_value_t = 10_000)]
    rerank_timeout_ms: u64,
}

fn parse_fusion(s: &str) -> Result<Fusion, String> {
    let f: Fusion = serde_json::from_str(s).map_err(|e| format!("not a fusion: {e}"))?;
    f.check()?;
    Ok(f)
}

impl ProxyCommand {
    pub fn run(self, global: &GlobalArgs) -> Result<(), CliError> {
        if self.topn == 0 {
            return Err(anyhow::anyhow!("--topn must be at least 1").into());
        }
        let reranker = global.reranker()?;
        let mut allowed = vec![self.component.clone()];
        for c in &self.allow_components {
            if !allowed.contains(c) {
                allowed.push(c.clone());
            }
        }
        for c in &allowed {
            reranker.model_info(c)?;
        }
        let mut config = ProxyConfig::new(self.upstream.clone(), self.component.clone());
        config.allowed_components = allowed;
        config.topn = self.topn;
        config.max_topn = self.max_topn;
        config.fields = self.fields.clone();
        config.fusion = self.fusion;
        config.strict = self.strict;
        config.max_response_bytes = self.max_response_bytes;
        config.max_request_bytes = self.max_request_bytes;
        config.rerank_timeout = Duration::from_millis(self.rerank_timeout_ms.max(1));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("nboost-proxy")
            .build()
            .context("cannot start the async runtime")?;
        let proxy = Proxy::new(config, reranker.service().clone())?;
        let result: anyhow::Result<()> = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(self.listen)
                .await
                .with_context(|| format!("cannot listen on {}", self.listen))?;
            let addr = listener.local_addr()?;
            tracing::info!(target: "nboost::proxy", %addr, upstream = %self.upstream,
                           component = %self.component, topn = self.topn, "proxying");
            {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                writeln!(out, "listening on http://{addr}")?;
                out.flush()?;
            }
            proxy::serve(listener, proxy, shutdown_signal()).await?;
            Ok(())
        });
        runtime.shutdown_timeout(
            Duration::from_millis(self.rerank_timeout_ms) + Duration::from_secs(1),
        );
        result?;
        eprintln!("nboost: proxy stopped after draining requests in flight");
        Ok(())
    }
}
