//! BM25 over the candidate set, with a deliberately small English analyser.
//!
//! Nothing in this module knows about WebAssembly or the plugin interface: it
//! is plain Rust over plain types, so `cargo test` runs it natively and the
//! component glue in `lib.rs` stays a thin adapter. Keep your own plugin's
//! logic split the same way.
//!
//! # Why IDF comes from the passages of the call
//!
//! A reranker sees only the query and the candidate passages a first-stage
//! retriever returned, never the whole collection. The candidate set is
//! therefore the only corpus there is: document frequencies and the average
//! passage length are computed over the passages of each `score` call. That
//! makes the scores comparable within a call (all the interface asks for), and
//! it still rewards rare query terms over common ones, which is most of what
//! BM25 buys over plain term overlap.
//!
//! # Analysis
//!
//! Text is split on every character that is not alphanumeric (Unicode-aware:
//! `é`, `ß`, CJK ideographs and digits all count as word characters) except
//! apostrophes; an English possessive `'s` is dropped, remaining apostrophes
//! are removed (`don't` → `dont`) and words are lowercased. Two optional
//! steps follow, both on by default:
//!
//! * a stopword filter with Lucene's classic 33-word English list, so that
//!   "the" and "of" do not dominate short passages; when a query consists of
//!   stopwords only ("to be or not to be") the filter is skipped for that call
//!   rather than scoring everything 0;
//! * the "S-stemmer" of Harman (1991), which only folds English plurals
//!   (`queries` → `query`, `cats` → `cat`). It is crude on purpose: it never
//!   conflates unrelated words, and it is ten lines anyone can audit.

use std::collections::BTreeMap;

/// Lucene's classic English stopword set (`EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`),
/// sorted so that membership is a binary search.
pub const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Whether `word` (already lowercased) is in [`STOPWORDS`].
pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.binary_search(&word).is_ok()
}

/// Harman's S-stemmer: folds English plurals, and nothing else.
///
/// Only the first matching rule applies, and words of three letters or fewer
/// are left alone (`gas`, `bus`, `is`):
///
/// 1. `-ies` → `-y`, unless the word ends in `-eies` or `-aies`;
/// 2. `-es` → `-e`, unless it ends in `-aes`, `-ees` or `-oes`;
/// 3. `-s` is dropped, unless the word ends in `-us` or `-ss`.
pub fn stem(word: &str) -> String {
    if word.chars().count() <= 3 {
        return word.to_owned();
    }
    if let Some(base) = word.strip_suffix("ies") {
        if !base.ends_with('e') && !base.ends_with('a') {
            return format!("{base}y");
        }
    }
    if let Some(base) = word.strip_suffix("es") {
        if !base.ends_with('a') && !base.ends_with('e') && !base.ends_with('o') {
            return format!("{base}e");
        }
    }
    if let Some(base) = word.strip_suffix('s') {
        if !base.ends_with('u') && !base.ends_with('s') {
            return base.to_owned();
        }
    }
    word.to_owned()
}

/// `'` or the typographic `’`: kept inside words so that possessives and
/// elisions can be handled (see [`Analyzer::terms`]).
fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

/// How text becomes terms. See the [module docs](self) for the rationale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Analyzer {
    /// Drop [`STOPWORDS`].
    pub stopwords: bool,
    /// Fold plurals with [`stem`].
    pub stem: bool,
}

impl Default for Analyzer {
    fn default() -> Self {
        Self {
            stopwords: true,
            stem: true,
        }
    }
}

impl Analyzer {
    /// The terms of `text`, in order, duplicates kept.
    pub fn terms(&self, text: &str) -> Vec<String> {
        text.split(|c: char| !c.is_alphanumeric() && !is_apostrophe(c))
            .map(|word| {
                // English possessive, then elisions: "Zürich's" -> "zürich",
                // "don't" -> "dont".
                let word = word.trim_matches(is_apostrophe);
                let word = word
                    .strip_suffix("'s")
                    .or_else(|| word.strip_suffix("\u{2019}s"))
                    .unwrap_or(word);
                word.replace(is_apostrophe, "").to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .filter(|w| !(self.stopwords && is_stopword(w)))
            .map(|w| if self.stem { stem(&w) } else { w })
            .collect()
    }
}

/// The two BM25 free parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bm25 {
    /// Term-frequency saturation: 0 makes a term count once however often it
    /// occurs; larger values let repeated terms keep adding score.
    pub k1: f64,
    /// Length normalisation, in `[0, 1]`: 0 ignores passage length, 1 fully
    /// normalises by it.
    pub b: f64,
}

impl Default for Bm25 {
    /// The usual defaults, `k1 = 1.2`, `b = 0.75`.
    fn default() -> Self {
        Self { k1: 1.2, b: 0.75 }
    }
}

impl Bm25 {
    /// BM25 of `query` against each of `passages`, all already analysed.
    ///
    /// Document frequencies and the average length are taken over `passages`
    /// (see the module docs). Repeated query terms count once per occurrence.
    /// The IDF is Lucene's `ln(1 + (N - df + 0.5) / (df + 0.5))`, which is
    /// never negative, so a passage never loses score for matching a term.
    ///
    /// Returns one finite score per passage; all zeros when nothing matches,
    /// when the query has no terms, or when every passage is empty.
    pub fn score(&self, query: &[String], passages: &[Vec<String>]) -> Vec<f32> {
        let n = passages.len();
        let total_len: usize = passages.iter().map(Vec::len).sum();
        if query.is_empty() || total_len == 0 {
            return vec![0.0; n];
        }
        let avg_len = total_len as f64 / n as f64;

        // Distinct query terms, numbered in sorted order (a BTreeMap, so
        // that sums run in the same order on every call and scores are
        // bit-for-bit reproducible), and how often each occurs in the query.
        let mut terms: BTreeMap<&str, (usize, u32)> = BTreeMap::new();
        for term in query {
            terms.entry(term).or_insert((0, 0)).1 += 1;
        }
        for (i, slot) in terms.values_mut().enumerate() {
            slot.0 = i;
        }
        let query_tf: Vec<f64> = terms.values().map(|&(_, qtf)| f64::from(qtf)).collect();

        // tf[p][i]: occurrences of query term i in passage p.
        let tf: Vec<Vec<u32>> = passages
            .iter()
            .map(|passage| {
                let mut counts = vec![0_u32; terms.len()];
                for term in passage {
                    if let Some(&(i, _)) = terms.get(term.as_str()) {
                        counts[i] += 1;
                    }
                }
                counts
            })
            .collect();

        let idf: Vec<f64> = (0..terms.len())
            .map(|i| {
                let df = tf.iter().filter(|counts| counts[i] > 0).count() as f64;
                (1.0 + (n as f64 - df + 0.5) / (df + 0.5)).ln()
            })
            .collect();

        passages
            .iter()
            .zip(&tf)
            .map(|(passage, counts)| {
                let norm = 1.0 - self.b + self.b * passage.len() as f64 / avg_len;
                // `fold` from +0.0, not `sum` (which starts at -0.0 and would
                // give non-matching passages a score of -0.0).
                let score = counts
                    .iter()
                    .zip(&query_tf)
                    .zip(&idf)
                    .filter(|((&tf, _), _)| tf > 0)
                    .map(|((&tf, &qtf), &idf)| {
                        let tf = f64::from(tf);
                        qtf * idf * tf * (self.k1 + 1.0) / (tf + self.k1 * norm)
                    })
                    .fold(0.0_f64, |total, x| total + x);
                score as f32
            })
            .collect()
    }
}

/// Analyse `query` and `passages` with `analyzer`, then score them with `bm25`.
///
/// If the stopword filter leaves the query without terms (a query made of
/// stopwords only), the call is analysed again without the filter, so that
/// such a query still ranks passages instead of scoring them all 0.
pub fn rank(analyzer: Analyzer, bm25: Bm25, query: &str, passages: &[String]) -> Vec<f32> {
    let mut analyzer = analyzer;
    let mut query_terms = analyzer.terms(query);
    if query_terms.is_empty() && analyzer.stopwords {
        analyzer.stopwords = false;
        query_terms = analyzer.terms(query);
    }
    let passage_terms: Vec<Vec<String>> = passages.iter().map(|p| analyzer.terms(p)).collect();
    bm25.score(&query_terms, &passage_terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stopwords_are_sorted_for_binary_search() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_stopword("the") && is_stopword("with") && !is_stopword("cat"));
    }

    #[test]
    fn stems_plurals_only() {
        assert_eq!(stem("queries"), "query");
        assert_eq!(stem("cats"), "cat");
        assert_eq!(stem("horses"), "horse");
        assert_eq!(stem("glass"), "glass");
        assert_eq!(stem("corpus"), "corpus");
        assert_eq!(stem("toes"), "toe");
        assert_eq!(stem("gas"), "gas");
        assert_eq!(stem("running"), "running");
    }

    #[test]
    fn analyses_unicode_and_punctuation() {
        let a = Analyzer::default();
        assert_eq!(
            a.terms("The CATS, of Zürich's cafés -- 42 ÉCOLES! Don’t 'quote'"),
            strings(&["cat", "zürich", "café", "42", "école", "dont", "quote"])
        );
        let plain = Analyzer {
            stopwords: false,
            stem: false,
        };
        assert_eq!(plain.terms("The cats"), strings(&["the", "cats"]));
        assert!(a.terms("  ,;  ").is_empty());
        assert!(a.terms("").is_empty());
    }

    #[test]
    fn empty_inputs_score_zero() {
        let a = Analyzer::default();
        let bm25 = Bm25::default();
        assert!(rank(a, bm25, "cat", &[]).is_empty());
        assert_eq!(
            rank(a, bm25, "", &strings(&["a cat", "a dog"])),
            vec![0.0, 0.0]
        );
        assert_eq!(rank(a, bm25, "cat", &strings(&["", "  "])), vec![0.0, 0.0]);
        assert_eq!(rank(a, bm25, "cat", &strings(&["dog", ""])), vec![0.0, 0.0]);
    }

    #[test]
    fn matching_passage_ranks_first() {
        let passages = strings(&[
            "Dogs are loyal companions and need daily walks.",
            "The cat sat on the mat; cats sleep most of the day.",
            "Stock markets fell sharply on Tuesday.",
        ]);
        let s = rank(
            Analyzer::default(),
            Bm25::default(),
            "why do cats sleep",
            &passages,
        );
        assert_eq!(s.len(), 3);
        assert!(s[1] > s[0] && s[1] > s[2], "{s:?}");
        assert_eq!(s[2].to_bits(), 0.0_f32.to_bits(), "+0.0, not -0.0");
        assert!(s.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn rare_terms_weigh_more_than_common_ones() {
        // "apple" occurs in every passage, "zebra" in one.
        let passages = strings(&["apple zebra", "apple apple", "apple pie", "apple tart"]);
        let s = rank(
            Analyzer::default(),
            Bm25::default(),
            "apple zebra",
            &passages,
        );
        assert!(s[0] > s[1] && s[0] > s[2], "{s:?}");
    }

    #[test]
    fn shorter_passages_win_with_length_normalisation() {
        let passages = strings(&[
            "rust",
            "rust is a language with many other words padding this passage out",
        ]);
        let s = rank(Analyzer::default(), Bm25::default(), "rust", &passages);
        assert!(s[0] > s[1], "{s:?}");
        let no_norm = Bm25 { k1: 1.2, b: 0.0 };
        let s = rank(Analyzer::default(), no_norm, "rust", &passages);
        assert_eq!(s[0], s[1]);
    }

    #[test]
    fn k1_zero_ignores_term_frequency() {
        let passages = strings(&["fox", "fox fox fox"]);
        let s = rank(
            Analyzer::default(),
            Bm25 { k1: 0.0, b: 0.0 },
            "fox",
            &passages,
        );
        assert_eq!(s[0], s[1]);
        let s = rank(Analyzer::default(), Bm25::default(), "fox", &passages);
        assert!(s[1] > s[0]);
    }

    #[test]
    fn stopword_only_query_falls_back_to_unfiltered() {
        let passages = strings(&["to be or not to be", "a tale of two cities"]);
        let s = rank(Analyzer::default(), Bm25::default(), "to be", &passages);
        assert!(s[0] > 0.0 && s[0] > s[1], "{s:?}");
    }

    #[test]
    fn scores_are_reproducible() {
        let passages = strings(&["b a c d", "c c a", "d b b a", "e"]);
        let first = rank(Analyzer::default(), Bm25::default(), "d c b a e", &passages);
        for _ in 0..20 {
            let again = rank(Analyzer::default(), Bm25::default(), "d c b a e", &passages);
            assert_eq!(first, again);
        }
    }

    #[test]
    fn single_passage_gets_positive_idf() {
        let s = rank(
            Analyzer::default(),
            Bm25::default(),
            "cat",
            &strings(&["cat"]),
        );
        assert!(s[0] > 0.0);
    }

    #[test]
    fn extreme_parameters_stay_finite() {
        let passages = strings(&["x x x x x x x x", "x", "y"]);
        for (k1, b) in [(0.0, 0.0), (0.0, 1.0), (100.0, 1.0), (100.0, 0.0)] {
            let s = rank(Analyzer::default(), Bm25 { k1, b }, "x x y", &passages);
            assert!(s.iter().all(|v| v.is_finite()), "{k1} {b} {s:?}");
        }
    }
}
