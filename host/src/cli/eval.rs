//! `nboost eval`.
use clap::Args;

use super::{CliError, GlobalArgs};

/// Retrieval quality on a BEIR-layout collection.
#[derive(Debug, Args)]
pub struct EvalCommand {}

impl EvalCommand {
    pub fn run(self, _global: &GlobalArgs) -> Result<(), CliError> {
        Err(anyhow::anyhow!("eval: not built yet").into())
    }
}
