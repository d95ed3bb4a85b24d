//! Hybrid fusion: the component's scores combined with the first stage's
//! (BM25 from the search engine, or any retriever's), so that reranking
//! never makes a search worse where the first stage is already strong.
//!
//! A model alone can lose to BM25 on a collection unlike its training data;
//! fusing keeps what each ranking gets right. Two methods, chosen per
//! request, with a per-component default in the manifest (`fusion = {...}`)
//! and [`Fusion::DEFAULT`] otherwise:
//!
//! * **reciprocal rank fusion** — `1/(k + rank_model) + 1/(k + rank_first)`
//!   (ranks from 1): needs no score calibration at all;
//! * **a normalised linear mix** — `w · norm(model) + (1 − w) · norm(first)`,
//!   each list normalised over the request's documents by min-max or by
//!   z-score.
//!
//! The host does this, not the component: every front end (HTTP API, CLI,
//! eval, the proxy) gets the same fusion for the same inputs. A leaf
//! module (pure arithmetic): the manifest, the service and eval use it.

use serde::{Deserialize, Serialize};

/// How a linear mix normalises each score list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    /// `(s − min) / (max − min)` (all equal: 0.5).
    Minmax,
    /// `(s − mean) / stddev` (stddev 0: 0).
    Zscore,
}

/// How model and first-stage scores combine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
pub enum Fusion {
    /// The model's score alone (the first stage's only breaks nothing).
    None,
    /// Reciprocal rank fusion with constant `k`.
    Rrf {
        /// The rank offset; larger flattens the top (default 60).
        #[serde(default = "default_k")]
        k: f64,
    },
    /// `weight · model + (1 − weight) · first stage`, both normalised.
    Linear {
        /// The model's share, 0 to 1 (default 0.5).
        #[serde(default = "default_weight")]
        weight: f64,
        /// How each list is normalised (default min-max).
        #[serde(default = "default_normalize")]
        normalize: Normalize,
    },
}

fn default_k() -> f64 {
    60.0
}

fn default_weight() -> f64 {
    0.5
}

fn default_normalize() -> Normalize {
    Normalize::Minmax
}

impl Fusion {
    /// The default where neither request nor component chooses: a z-score
    /// mix with the model's weight 0.8. Chosen on ../shared/data with
    /// `nboost eval --fusion-grid` (MiniLM over the stemmed BM25 top 100):
    /// of the 25 fusions scored, only the linear mixes with weight 0.8 or
    /// 0.9 are at least as good as BM25 *and* as the model alone on all four
    /// collections (RRF loses to the model on CISI and MEDLINE), and this
    /// one has the best mean NDCG@10 (0.546, against 0.523 for the model
    /// alone and 0.462 for BM25). See the README's fusion table.
    pub const DEFAULT: Fusion = Fusion::Linear {
        weight: 0.8,
        normalize: Normalize::Zscore,
    };

    /// A short label (`rrf(k=60)`, `linear(w=0.5,minmax)`, `none`).
    pub fn label(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Rrf { k } => format!("rrf(k={k})"),
            Self::Linear { weight, normalize } => format!(
                "linear(w={weight},{})",
                match normalize {
                    Normalize::Minmax => "minmax",
                    Normalize::Zscore => "zscore",
                }
            ),
        }
    }

    /// Refuse parameters that mean nothing.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Self::Rrf { k } if !(k.is_finite() && k >= 0.0) => {
                Err(format!("fusion `k` must be a finite number >= 0, not {k}"))
            }
            Self::Linear { weight, .. } if !(0.0..=1.0).contains(&weight) => Err(format!(
                "fusion `weight` must be between 0 and 1, not {weight}"
            )),
            _ => Ok(()),
        }
    }

    /// The fused score of each document from its model and first-stage
    /// scores (same order, same length).
    pub fn fuse(&self, model: &[f32], first: &[f32]) -> Vec<f32> {
        debug_assert_eq!(model.len(), first.len());
        match *self {
            Self::None => model.to_vec(),
            Self::Rrf { k } => {
                let (rm, rf) = (ranks(model), ranks(first));
                rm.iter()
                    .zip(&rf)
                    .map(|(&a, &b)| (1.0 / (k + a as f64) + 1.0 / (k + b as f64)) as f32)
                    .collect()
            }
            Self::Linear { weight, normalize } => {
                let (m, f) = (norm(model, normalize), norm(first, normalize));
                m.iter()
                    .zip(&f)
                    .map(|(&a, &b)| (weight * a as f64 + (1.0 - weight) * b as f64) as f32)
                    .collect()
            }
        }
    }
}

/// The 1-based rank of each score (best first; ties by position).
fn ranks(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut rank = vec![0; scores.len()];
    for (r, i) in order.into_iter().enumerate() {
        rank[i] = r + 1;
    }
    rank
}

fn norm(scores: &[f32], how: Normalize) -> Vec<f32> {
    let n = scores.len().max(1) as f32;
    match how {
        Normalize::Minmax => {
            let min = scores.iter().copied().fold(f32::INFINITY, f32::min);
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let span = max - min;
            scores
                .iter()
                .map(|s| if span > 0.0 { (s - min) / span } else { 0.5 })
                .collect()
        }
        Normalize::Zscore => {
            let mean = scores.iter().sum::<f32>() / n;
            let sd = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / n).sqrt();
            scores
                .iter()
                .map(|s| if sd > 0.0 { (s - mean) / sd } else { 0.0 })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(scores: &[f32]) -> Vec<usize> {
        let r = ranks(scores);
        let mut o: Vec<usize> = (0..scores.len()).collect();
        o.sort_by_key(|&i| r[i]);
        o
    }

    #[test]
    fn rrf_rewards_agreement() {
        // Model: 2 > 0 > 1; first stage: 0 > 1 > 2. Document 0 is near the
        // top of both and wins; k = 0 would let one first place dominate.
        let model = [0.8, 0.1, 0.9];
        let first = [12.0, 7.0, 1.0];
        let fused = Fusion::Rrf { k: 60.0 }.fuse(&model, &first);
        assert_eq!(order(&fused), vec![0, 2, 1]);
        let want = 1.0 / 62.0 + 1.0 / 61.0;
        assert!((fused[0] - want).abs() < 1e-7, "{fused:?}");
    }

    #[test]
    fn linear_mixes_normalised_scores() {
        let model = [0.0, 1.0, 0.5];
        let first = [10.0, 0.0, 5.0];
        let mm = Fusion::Linear {
            weight: 0.25,
            normalize: Normalize::Minmax,
        };
        let fused = mm.fuse(&model, &first);
        assert_eq!(fused, vec![0.75, 0.25, 0.5]);
        let only_model = Fusion::Linear {
            weight: 1.0,
            normalize: Normalize::Zscore,
        };
        assert_eq!(order(&only_model.fuse(&model, &first)), vec![1, 2, 0]);
        let flat = norm(&[3.0, 3.0], Normalize::Zscore);
        assert_eq!(flat, vec![0.0, 0.0]);
        assert_eq!(norm(&[3.0, 3.0], Normalize::Minmax), vec![0.5, 0.5]);
    }

    #[test]
    fn none_is_the_model_and_bad_parameters_are_refused() {
        assert_eq!(Fusion::None.fuse(&[1.0, 2.0], &[9.0, 0.0]), vec![1.0, 2.0]);
        assert!(Fusion::Rrf { k: -1.0 }.check().is_err());
        let w = Fusion::Linear {
            weight: 1.5,
            normalize: Normalize::Minmax,
        };
        assert!(w.check().unwrap_err().contains("between 0 and 1"));
        let parsed: Fusion = serde_json::from_str(r#"{"method": "rrf"}"#).unwrap();
        assert_eq!(parsed, Fusion::Rrf { k: 60.0 });
        let parsed: Fusion =
            serde_json::from_str(r#"{"method": "linear", "normalize": "zscore"}"#).unwrap();
        assert_eq!(parsed.label(), "linear(w=0.5,zscore)");
        assert!(serde_json::from_str::<Fusion>(r#"{"method": "rrf", "w": 1}"#).is_err());
    }
}
