//! `nboost migrate`: apply the shared database's schema migrations without
//! serving (an init container, a deploy job). `serve` applies them too, at
//! start, under the same advisory lock, so running both at once is safe.

use clap::Args;

use super::CliError;

/// Apply pending schema migrations to the shared database.
#[derive(Debug, Args)]
pub struct MigrateCommand {
    /// `postgres://USER[:PASS]@HOST[:PORT]/DB`.
    #[arg(long, env = "NBOOST_DATABASE_URL")]
    database_url: String,
}

impl MigrateCommand {
    pub fn run(self) -> Result<(), CliError> {
        let (applied, version) = nboost::store::shared::migrate::migrate_url(&self.database_url)?;
        if applied.is_empty() {
            println!("schema at version {version}: nothing to apply");
        } else {
            let list: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
            println!("applied {}; schema at version {version}", list.join(", "));
        }
        Ok(())
    }
}
