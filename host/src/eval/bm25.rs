//! The first stage: an in-RAM tantivy BM25 index over a corpus.

#[allow(unused_imports, reason = "the evaluation's shared imports")]
use super::*;

/// An in-RAM tantivy BM25 index over a corpus.
pub struct Bm25Index {
    reader: IndexReader,
    analyzer: TextAnalyzer,
    fields: [Field; 2],
}

impl std::fmt::Debug for Bm25Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bm25Index")
            .field("docs", &self.reader.searcher().num_docs())
            .finish()
    }
}

impl Bm25Index {
    /// Index `documents` (title and text; stemmed with `stem`). Search
    /// results refer to documents by their position in this slice.
    pub fn build(documents: &[Document], stem: bool) -> Result<Self, EvalError> {
        let mut schema = Schema::builder();
        let text_options = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(analyzer(stem))
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let title = schema.add_text_field("title", text_options.clone());
        let text = schema.add_text_field("text", text_options);
        let position = schema.add_u64_field("position", FAST);
        let index = Index::create_in_ram(schema.build());
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 50_000_000)?;
        for (i, d) in documents.iter().enumerate() {
            writer.add_document(doc!(
                title => d.title.as_str(),
                text => d.text.as_str(),
                position => i as u64,
            ))?;
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let analyzer = index.tokenizer_for_field(text)?;
        Ok(Self {
            reader,
            analyzer,
            fields: [title, text],
        })
    }

    /// The analysed terms of `query` (lower-cased, stemmed), in order,
    /// repeats kept.
    pub fn query_terms(&self, query: &str) -> Vec<String> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(query);
        let mut terms = Vec::new();
        while stream.advance() {
            terms.push(stream.token().text.clone());
        }
        terms
    }

    /// The BM25 top `k` for `query`: `(document position, score)`, best
    /// first, ties in corpus order. Every query term is matched in title and
    /// text and the scores add up (a repeated term counts again). A query
    /// with no terms matches nothing.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<(usize, f32)>, EvalError> {
        let terms = self.query_terms(query);
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .flat_map(|t| {
                self.fields.iter().map(move |&f| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(f, t),
                        IndexRecordOption::WithFreqs,
                    ));
                    (Occur::Should, q)
                })
            })
            .collect();
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let hits = searcher.search(&query, &TopDocs::with_limit(k).order_by_score())?;
        let mut columns = HashMap::new();
        let mut out = Vec::with_capacity(hits.len());
        for (score, addr) in hits {
            let column = match columns.entry(addr.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    searcher
                        .segment_reader(addr.segment_ord)
                        .fast_fields()
                        .u64("position")?,
                ),
            };
            let position = column.first(addr.doc_id).ok_or_else(|| {
                tantivy::TantivyError::InternalError("document without a position".into())
            })?;
            out.push((position as usize, score));
        }
        // Equal scores across segments: keep corpus order.
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(out)
    }
}
