//! BEIR collections: corpus, queries and judgements, read and checked.

#[allow(unused_imports, reason = "the evaluation's shared imports")]
use super::*;

/// One document of a corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The corpus id (`_id`).
    pub id: String,
    /// The title; may be empty.
    pub title: String,
    /// The body text; may be empty.
    pub text: String,
}

impl Document {
    /// The passage a reranker sees: `"title. text"`, or whichever of the two
    /// is non-empty.
    pub fn passage(&self) -> String {
        let title = self.title.trim();
        let text = self.text.trim();
        match (title.is_empty(), text.is_empty()) {
            (false, false) => format!("{title}. {text}"),
            (false, true) => title.to_string(),
            _ => text.to_string(),
        }
    }
}

/// One query of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryEntry {
    /// The query id (`_id`).
    pub id: String,
    /// The query text.
    pub text: String,
}

/// A BEIR-layout test collection held in memory.
#[derive(Debug, Clone, Default)]
pub struct Collection {
    /// A display name (the directory name when loaded from disk).
    pub name: String,
    /// The corpus, in file order.
    pub documents: Vec<Document>,
    /// The queries, in file order.
    pub queries: Vec<QueryEntry>,
    /// Judgements per query id.
    pub qrels: HashMap<String, Judgements>,
}

/// A JSON id: BEIR ids are strings, but some converters write numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonId {
    Str(String),
    Int(i64),
}

impl JsonId {
    fn into_string(self) -> String {
        match self {
            Self::Str(s) => s,
            Self::Int(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CorpusLine {
    #[serde(rename = "_id")]
    id: JsonId,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct QueryLine {
    #[serde(rename = "_id")]
    id: JsonId,
    text: String,
}

pub(super) fn read(path: &Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|error| EvalError::Io {
        path: path.to_path_buf(),
        error,
    })
}

pub(super) fn parse_error(path: &Path, line: usize, reason: impl Into<String>) -> EvalError {
    EvalError::Parse {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// Parse JSON lines, skipping blank ones; `what` names the expected shape.
pub(super) fn parse_jsonl<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    what: &str,
) -> Result<Vec<(usize, T)>, EvalError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(line)
            .map_err(|e| parse_error(path, n + 1, format!("expected {what}: {e}")))?;
        out.push((n + 1, value));
    }
    Ok(out)
}

impl Collection {
    /// True when `dir` looks like a collection (has a `corpus.jsonl`).
    pub fn is_collection_dir(dir: &Path) -> bool {
        dir.join("corpus.jsonl").is_file()
    }

    /// Load `corpus.jsonl`, `queries.jsonl` and `qrels.tsv` from `dir`. The
    /// collection is named after the directory.
    pub fn load(dir: &Path) -> Result<Self, EvalError> {
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let corpus_path = dir.join("corpus.jsonl");
        let queries_path = dir.join("queries.jsonl");
        let qrels_path = dir.join("qrels.tsv");
        Ok(Self {
            name,
            documents: Self::parse_corpus(&corpus_path, &read(&corpus_path)?)?,
            queries: Self::parse_queries(&queries_path, &read(&queries_path)?)?,
            qrels: Self::parse_qrels(&qrels_path, &read(&qrels_path)?)?,
        })
    }

    /// Parse a `corpus.jsonl` body; `path` is only used in messages. Ids
    /// must be unique; a missing title or text is taken as empty.
    pub fn parse_corpus(path: &Path, text: &str) -> Result<Vec<Document>, EvalError> {
        let lines: Vec<(usize, CorpusLine)> =
            parse_jsonl(path, text, r#"an object {"_id", "title", "text"}"#)?;
        let mut seen = HashSet::with_capacity(lines.len());
        let mut docs = Vec::with_capacity(lines.len());
        for (line, d) in lines {
            let id = d.id.into_string();
            if !seen.insert(id.clone()) {
                return Err(parse_error(
                    path,
                    line,
                    format!("duplicate document id `{id}`"),
                ));
            }
            docs.push(Document {
                id,
                title: d.title.unwrap_or_default(),
                text: d.text.unwrap_or_default(),
            });
        }
        Ok(docs)
    }

    /// Parse a `queries.jsonl` body; `path` is only used in messages.
    pub fn parse_queries(path: &Path, text: &str) -> Result<Vec<QueryEntry>, EvalError> {
        let lines: Vec<(usize, QueryLine)> =
            parse_jsonl(path, text, r#"an object {"_id", "text"}"#)?;
        let mut seen = HashSet::with_capacity(lines.len());
        let mut queries = Vec::with_capacity(lines.len());
        for (line, q) in lines {
            let id = q.id.into_string();
            if !seen.insert(id.clone()) {
                return Err(parse_error(
                    path,
                    line,
                    format!("duplicate query id `{id}`"),
                ));
            }
            queries.push(QueryEntry { id, text: q.text });
        }
        Ok(queries)
    }

    /// Parse a `qrels.tsv` body (`query-id<TAB>corpus-id<TAB>score`, integer
    /// score, optional header line); `path` is only used in messages. A pair
    /// judged twice keeps its last score.
    pub fn parse_qrels(path: &Path, text: &str) -> Result<HashMap<String, Judgements>, EvalError> {
        let mut qrels: HashMap<String, Judgements> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            if n == 0 && line.starts_with("query-id") {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            let [qid, did, score] = cols[..] else {
                return Err(parse_error(
                    path,
                    n + 1,
                    format!(
                        "expected 3 tab-separated columns (query-id, corpus-id, score), found {}",
                        cols.len()
                    ),
                ));
            };
            let (qid, did) = (qid.trim(), did.trim());
            if qid.is_empty() || did.is_empty() {
                return Err(parse_error(path, n + 1, "empty query-id or corpus-id"));
            }
            let score: i64 = score.trim().parse().map_err(|_| {
                parse_error(path, n + 1, format!("score `{score}` is not an integer"))
            })?;
            qrels
                .entry(qid.to_string())
                .or_default()
                .insert(did.to_string(), score);
        }
        Ok(qrels)
    }

    /// The queries that have at least one relevant (score > 0) judgement, in
    /// file order; the others cannot be scored and are skipped.
    pub fn judged_queries(&self) -> impl Iterator<Item = (&QueryEntry, &Judgements)> {
        self.queries.iter().filter_map(|q| {
            let j = self.qrels.get(&q.id)?;
            j.values().any(|&s| s > 0).then_some((q, j))
        })
    }
}
