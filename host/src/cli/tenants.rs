//! `nboost tenants`: add tenants, rotate their keys, set their quotas; and
//! the operator's tenants file that `nboost serve --tenants` applies.
//!
//! Works on the store directly — the data directory's SQLite, or with
//! `--database-url`/`--object-store` the replicas' shared PostgreSQL — so it
//! can run next to live servers: a new tenant or key is usable on the server's next request,
//! and a rotated key stops working at once. A key is printed once, alone on
//! stdout (for scripts); only its sha256 is stored.
//!
//! The tenants file is for configuration management: keys appear in it only
//! as hashes (`nboost tenants new-key` makes a key and prints both), and
//! every start applies it over the data directory (create or update; tenants
//! missing from the file are left alone):
//!
//! ```toml
//! [tenants.acme]
//! key-sha256 = "9f86d0..."      # sha256 hex of the key
//! max-concurrent = 64           # other keys: max-components, max-graphs,
//!                               # max-bytes, max-deadline-ms, max-memory-mib
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use nboost::store::{ApiKey, Quotas, Store, StoreError, TenantId};
use serde::Deserialize;

use super::CliError;

/// Where the server keeps its state.
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// Data directory: tenants, keys, uploaded components and graphs
    /// (created if missing).
    #[arg(long, env = "NBOOST_DATA_DIR", default_value = "nboost-data")]
    pub data_dir: PathBuf,
    /// Shared state for replicas: tenants and records in this PostgreSQL
    /// database (`postgres://USER[:PASS]@HOST[:PORT]/DB`) instead of the
    /// data directory's SQLite; the data directory then holds only caches.
    /// Needs `--object-store`.
    #[cfg(feature = "shared")]
    #[arg(long, env = "NBOOST_DATABASE_URL", requires = "object_store")]
    pub database_url: Option<String>,
    /// Blobs (uploads, precompiled artifacts) in this S3-compatible bucket
    /// (`s3://BUCKET[/PREFIX]`; endpoint and credentials from `AWS_*`
    /// variables: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP=true` for a
    /// plain-HTTP endpoint). Needs `--database-url`.
    #[cfg(feature = "shared")]
    #[arg(long, env = "NBOOST_OBJECT_STORE", requires = "database_url")]
    pub object_store: Option<String>,
    /// Connections in this process's PostgreSQL pool (shared state).
    #[cfg(feature = "shared")]
    #[arg(long, env = "NBOOST_DATABASE_POOL", default_value_t = 8)]
    pub database_pool: usize,
}

#[cfg(feature = "uploads")]
impl DataDirArgs {
    /// The store these flags name: shared (PostgreSQL + object store) or
    /// the data directory's; `serving` takes the directory's lock, removes
    /// crash leftovers, and (shared) joins the live replicas.
    pub fn open(&self, serving: bool) -> Result<Store, StoreError> {
        #[cfg(feature = "shared")]
        if let (Some(db), Some(bucket)) = (&self.database_url, &self.object_store) {
            let config = nboost::store::shared::SharedConfig {
                database_url: db.clone(),
                object_store: bucket.clone(),
                s3_options: Vec::new(),
                pool_size: self.database_pool,
                garbage_min_age: std::time::Duration::from_secs(15 * 60),
                heartbeat: serving,
            };
            let store = nboost::store::shared::open(&self.data_dir, &config)?;
            if !serving {
                return Ok(store);
            }
            let store = store.lock_for_serving()?;
            store.recover()?;
            return Ok(store);
        }
        if serving {
            Store::open_for_serving(&self.data_dir)
        } else {
            Store::open(&self.data_dir)
        }
    }
}

/// Quota flags; unset ones keep the default (add) or current (set-quota)
/// value.
#[derive(Debug, Clone, Args)]
pub struct QuotaArgs {
    /// Most components the tenant may own.
    #[arg(long)]
    max_components: Option<u32>,
    /// Most graphs (model files) the tenant may own.
    #[arg(long)]
    max_graphs: Option<u32>,
    /// Most bytes of components and graphs together.
    #[arg(long)]
    max_bytes: Option<u64>,
    /// Most rerank calls in flight at once (more get 429).
    #[arg(long)]
    max_concurrent: Option<u32>,
    /// Per-call deadline in ms (narrows the host's; never widens it). Not
    /// `--deadline-ms`: that global flag sets the host's own maximum.
    #[arg(long = "max-deadline-ms")]
    deadline_ms: Option<u64>,
    /// Per-instance memory in MiB (narrows the host's; never widens it).
    #[arg(long = "max-memory-mib")]
    memory_mib: Option<u64>,
}

impl QuotaArgs {
    fn over(&self, mut q: Quotas) -> Quotas {
        if let Some(v) = self.max_components {
            q.max_components = v;
        }
        if let Some(v) = self.max_graphs {
            q.max_graphs = v;
        }
        if let Some(v) = self.max_bytes {
            q.max_bytes = v;
        }
        if let Some(v) = self.max_concurrent {
            q.max_concurrent = v.max(1);
        }
        if let Some(v) = self.deadline_ms {
            q.deadline_ms = Some(v.max(1));
        }
        if let Some(v) = self.memory_mib {
            q.memory_mib = Some(v.max(1));
        }
        q
    }
}

/// `nboost tenants ...`
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Add a tenant and print its API key (shown only this once).
    Add {
        /// Tenant name (lowercase words separated by '-').
        name: String,
        #[command(flatten)]
        data: DataDirArgs,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
    /// Give a tenant a new API key and print it; the old key stops working.
    RotateKey {
        /// Tenant name.
        name: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Change a tenant's quotas.
    SetQuota {
        /// Tenant name.
        name: String,
        #[command(flatten)]
        data: DataDirArgs,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
    /// List tenants with their quotas and usage (JSON lines).
    List {
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Make a key for a tenants file: prints the key, then the
    /// `key-sha256 = "..."` line to put in the file. Stores nothing.
    NewKey,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    #[serde(default)]
    tenants: BTreeMap<String, TenantEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TenantEntry {
    /// `key-sha256 = "<64 hex>"`
    key_sha256: String,
    /// `max-components = 16`
    max_components: Option<u32>,
    /// `max-graphs = 16`
    max_graphs: Option<u32>,
    /// `max-bytes = 1073741824`
    max_bytes: Option<u64>,
    /// `max-concurrent = 16`
    max_concurrent: Option<u32>,
    /// `max-deadline-ms = 2000`
    max_deadline_ms: Option<u64>,
    /// `max-memory-mib = 256`
    max_memory_mib: Option<u64>,
}

/// Apply the tenants file at `path` to `store`; returns how many tenants it
/// names.
pub fn apply_tenants_file(path: &Path, store: &Store) -> Result<usize, CliError> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the tenants file {}", path.display()))?;
    let file: TenantsFile =
        toml::from_str(&text).with_context(|| format!("tenants file {}", path.display()))?;
    for (name, e) in &file.tenants {
        let id = TenantId::parse(name).map_err(StoreError::InvalidName)?;
        let quotas = QuotaArgs {
            max_components: e.max_components,
            max_graphs: e.max_graphs,
            max_bytes: e.max_bytes,
            max_concurrent: e.max_concurrent,
            deadline_ms: e.max_deadline_ms,
            memory_mib: e.max_memory_mib,
        }
        .over(Quotas::default());
        let created = store.upsert_tenant_hashed(&id, &e.key_sha256, &quotas)?;
        tracing::info!(target: "nboost::server", tenant = %id, created, "tenant from the tenants file");
    }
    Ok(file.tenants.len())
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let code = match e {
            StoreError::TenantExists(_)
            | StoreError::UnknownTenant(_)
            | StoreError::InvalidName(_) => 2,
            _ => 1,
        };
        Self {
            err: e.into(),
            code,
        }
    }
}

/// A new key and the line a tenants file takes.
fn new_key() -> Result<(), CliError> {
    let key = ApiKey::generate().map_err(|e| anyhow::anyhow!(e))?;
    println!("{}", key.reveal());
    println!("key-sha256 = \"{}\"", key.hash());
    Ok(())
}

/// A lean build keeps no durable store: only `new-key` (for a tenants
/// file) runs.
#[cfg(not(feature = "uploads"))]
impl TenantsCommand {
    pub fn run(self) -> Result<(), CliError> {
        match self {
            Self::NewKey => new_key(),
            _ => Err(CliError {
                err: anyhow::anyhow!(
                    "this nboost is a lean build without the durable store: an edge node's \
                     tenants come from `nboost serve --tenants FILE` (keys from `nboost tenants \
                     new-key`)"
                ),
                code: 2,
            }),
        }
    }
}

#[cfg(feature = "uploads")]
impl TenantsCommand {
    pub fn run(self) -> Result<(), CliError> {
        match self {
            Self::Add { name, data, quotas } => {
                let id = TenantId::parse(&name).map_err(StoreError::InvalidName)?;
                let store = data.open(false)?;
                let key = store.add_tenant(&id, &quotas.over(Quotas::default()))?;
                eprintln!("tenant `{id}` added; its API key (shown once) follows on stdout");
                println!("{}", key.reveal());
            }
            Self::RotateKey { name, data } => {
                let id = TenantId::parse(&name).map_err(StoreError::InvalidName)?;
                let store = data.open(false)?;
                let key = store.rotate_key(&id)?;
                eprintln!(
                    "tenant `{id}` has a new API key (shown once; the old one no longer works):"
                );
                println!("{}", key.reveal());
            }
            Self::SetQuota { name, data, quotas } => {
                let id = TenantId::parse(&name).map_err(StoreError::InvalidName)?;
                let store = data.open(false)?;
                let current = store
                    .tenant(&id)?
                    .ok_or_else(|| StoreError::UnknownTenant(name.clone()))?;
                store.set_quotas(&id, &quotas.over(current.quotas))?;
                eprintln!("tenant `{id}`: quotas updated");
            }
            Self::NewKey => new_key()?,
            Self::List { data } => {
                let store = data.open(false)?;
                for t in store.tenants()? {
                    let usage = store.usage(&t.name)?;
                    println!(
                        "{}",
                        serde_json::json!({ "name": t.name, "quotas": t.quotas, "usage": usage })
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(not(feature = "uploads"))]
impl DataDirArgs {
    /// The lean build's store: tenants in memory, the directory locked.
    pub fn open(&self, _serving: bool) -> Result<Store, StoreError> {
        Store::open_for_serving(&self.data_dir)
    }
}
