//! Ranking: the one input check (in two parts) and the one ordering every
//! front end uses.
//!
//! Input is checked against the component's limits before any guest code
//! runs; ordering and top-n are done here, not in the plugin.

use super::{RerankJob, ServiceError};
use crate::fusion::Fusion;
use crate::sandbox::SandboxLimits;
use crate::RerankError;

/// One passage in the output: its index in the request and its score.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RankedPassage {
    /// Position in the request's passage list.
    pub index: usize,
    /// The plugin's score; higher is more relevant.
    pub score: f32,
}

/// Order scores best first (ties keep request order) and cut to `top_n`.
pub fn rank(scores: Vec<f32>, top_n: Option<usize>) -> Vec<RankedPassage> {
    let mut ranking: Vec<RankedPassage> = scores
        .into_iter()
        .enumerate()
        .map(|(index, score)| RankedPassage { index, score })
        .collect();
    ranking.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
    if let Some(n) = top_n {
        ranking.truncate(n);
    }
    ranking
}

/// The one input check, part one, before any lookup: documents to rank, a
/// query, no more documents than the service takes, a sensible `top_n`.
pub fn check_request(job: &RerankJob, max_documents: usize) -> Result<(), ServiceError> {
    if job.documents.is_empty() {
        return Err(ServiceError::EmptyDocuments);
    }
    if job.query.trim().is_empty() {
        return Err(RerankError::InvalidInput("the query is empty".into()).into());
    }
    if job.documents.len() > max_documents {
        return Err(RerankError::InvalidInput(format!(
            "{} documents is over this server's limit of {max_documents}",
            job.documents.len(),
        ))
        .into());
    }
    if job.top_n == Some(0) {
        return Err(RerankError::InvalidInput("top_n must be at least 1".into()).into());
    }
    match (&job.first_stage, &job.fusion) {
        (Some(first), _) if first.len() != job.documents.len() => {
            return Err(RerankError::InvalidInput(format!(
                "{} first-stage scores for {} documents",
                first.len(),
                job.documents.len()
            ))
            .into());
        }
        (Some(first), _) if first.iter().any(|s| !s.is_finite()) => {
            return Err(
                RerankError::InvalidInput("first-stage scores must be finite".into()).into(),
            );
        }
        (None, Some(f)) if *f != Fusion::None => {
            return Err(RerankError::InvalidInput(format!(
                "fusion `{}` needs first-stage scores",
                f.label()
            ))
            .into());
        }
        _ => {}
    }
    if let Some(f) = &job.fusion {
        f.check().map_err(RerankError::InvalidInput)?;
    }
    Ok(())
}

/// Part two, once the component is known: no more passages or text than
/// its limits allow.
pub fn check_limits(
    limits: &SandboxLimits,
    query: &str,
    passages: &[String],
) -> Result<(), RerankError> {
    if passages.len() > limits.max_passages {
        return Err(RerankError::InvalidInput(format!(
            "{} passages is over the limit of {}",
            passages.len(),
            limits.max_passages
        )));
    }
    let bytes: usize = query.len() + passages.iter().map(String::len).sum::<usize>();
    if bytes > limits.max_input_bytes {
        return Err(RerankError::InvalidInput(format!(
            "{bytes} bytes of text is over the limit of {}",
            limits.max_input_bytes
        )));
    }
    Ok(())
}
