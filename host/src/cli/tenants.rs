//! `nboost tenants`: add tenants, rotate their keys, set their quotas.
//!
//! Works on the data directory directly (SQLite), so it can run next to a
//! live server: a new tenant or key is usable on the server's next request,
//! and a rotated key stops working at once. A key is printed once, alone on
//! stdout (for scripts); only its sha256 is stored.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use nboost::store::{Quotas, Store, StoreError, TenantId};

use super::CliError;

/// Where the server keeps its state.
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// Data directory: tenants, keys, uploaded components and graphs
    /// (created if missing).
    #[arg(long, env = "NBOOST_DATA_DIR", default_value = "nboost-data")]
    pub data_dir: PathBuf,
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
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let code = match e {
            StoreError::TenantExists(_) | StoreError::UnknownTenant(_) | StoreError::InvalidName(_) => 2,
            _ => 1,
        };
        Self {
            err: e.into(),
            code,
        }
    }
}

impl TenantsCommand {
    pub fn run(self) -> Result<(), CliError> {
        match self {
            Self::Add { name, data, quotas } => {
                let id = TenantId::parse(&name)?;
                let store = Store::open(&data.data_dir)?;
                let key = store.add_tenant(&id, &quotas.over(Quotas::default()))?;
                eprintln!("tenant `{id}` added; its API key (shown once) follows on stdout");
                println!("{}", key.reveal());
            }
            Self::RotateKey { name, data } => {
                let id = TenantId::parse(&name)?;
                let store = Store::open(&data.data_dir)?;
                let key = store.rotate_key(&id)?;
                eprintln!("tenant `{id}` has a new API key (shown once; the old one no longer works):");
                println!("{}", key.reveal());
            }
            Self::SetQuota { name, data, quotas } => {
                let id = TenantId::parse(&name)?;
                let store = Store::open(&data.data_dir)?;
                let current = store.tenant(&id)?.ok_or_else(|| StoreError::UnknownTenant(name.clone()))?;
                store.set_quotas(&id, &quotas.over(current.quotas))?;
                eprintln!("tenant `{id}`: quotas updated");
            }
            Self::List { data } => {
                let store = Store::open(&data.data_dir)?;
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
