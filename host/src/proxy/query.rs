//! The query text of a search: what the reranker compares each hit with.
//!
//! Elasticsearch's query DSL nests; the text a user typed sits in a few
//! well-known places. Clauses that carry no text (filters, `exists`,
//! ranges) are ignored, and Lucene query syntax (`field:`, operators,
//! boosts, fuzziness) is reduced to its words.

use serde_json::Value;

/// The text of a query: `match`, `match_phrase`, `multi_match`,
/// `query_string`, `simple_query_string`, `term`, and a `bool` (its `must`
/// and `should` clauses), `dis_max`, `function_score`, `constant_score`
/// or `boosting` around them. `None` when no clause carries text.
pub fn query_text(query: &Value) -> Option<String> {
    let obj = query.as_object()?;
    let mut texts = Vec::new();
    for (kind, clause) in obj {
        let text = match kind.as_str() {
            "match" | "match_phrase" | "match_phrase_prefix" | "match_bool_prefix" | "term" => {
                field_value(clause)
            }
            "multi_match" | "combined_fields" => clause.get("query").and_then(scalar_text),
            "query_string" | "simple_query_string" => {
                clause.get("query").and_then(Value::as_str).map(lucene_text)
            }
            "bool" => {
                let parts: Vec<String> = ["must", "should"]
                    .iter()
                    .filter_map(|k| clause.get(*k))
                    .flat_map(one_or_many)
                    .filter_map(query_text)
                    .collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            }
            "dis_max" => clause
                .get("queries")
                .map(|q| {
                    one_or_many(q)
                        .filter_map(query_text)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .filter(|s| !s.is_empty()),
            "function_score" | "script_score" => clause.get("query").and_then(query_text),
            "constant_score" => clause.get("filter").and_then(query_text),
            "boosting" => clause.get("positive").and_then(query_text),
            _ => None,
        };
        texts.extend(text);
    }
    (!texts.is_empty()).then(|| texts.join(" "))
}

fn one_or_many(v: &Value) -> Box<dyn Iterator<Item = &Value> + '_> {
    match v {
        Value::Array(items) => Box::new(items.iter()),
        other => Box::new(std::iter::once(other)),
    }
}

/// `{"field": "text"}` or `{"field": {"query"|"value": "text", ...}}`.
fn field_value(clause: &Value) -> Option<String> {
    let (_, spec) = clause.as_object()?.iter().next()?;
    match spec {
        Value::Object(m) => m
            .get("query")
            .or_else(|| m.get("value"))
            .and_then(scalar_text),
        other => scalar_text(other),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The words of a Lucene query string (`?q=`, `query_string`): field
/// prefixes, operators and syntax characters dropped, what a reader of the
/// query would call its text kept.
pub fn lucene_text(q: &str) -> String {
    q.split_whitespace()
        .filter(|w| !matches!(*w, "AND" | "OR" | "NOT" | "&&" | "||"))
        .map(|w| match w.split_once(':') {
            Some((field, rest))
                if !field.is_empty()
                    && field
                        .chars()
                        .all(|c| c.is_alphanumeric() || "_.*-+(".contains(c)) =>
            {
                rest
            }
            _ => w,
        })
        .map(|w| w.split(['~', '^']).next().unwrap_or(""))
        .map(|w| w.trim_matches(|c: char| "+-!()[]{}\"*?\\/".contains(c)))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_texts_are_found_in_every_supported_form() {
        let cases = [
            (json!({"match": {"text": "wing lift"}}), "wing lift"),
            (
                json!({"match": {"text": {"query": "wing lift", "operator": "and"}}}),
                "wing lift",
            ),
            (
                json!({"match_phrase": {"title": "boundary layer"}}),
                "boundary layer",
            ),
            (
                json!({"multi_match": {"query": "heat flux", "fields": ["a", "b"]}}),
                "heat flux",
            ),
            (
                json!({"query_string": {"query": "title:wing AND (lift OR drag)"}}),
                "wing lift drag",
            ),
            (
                json!({"simple_query_string": {"query": "\"shock wave\" +mach~2"}}),
                "shock wave mach",
            ),
            (json!({"term": {"text": {"value": "wing"}}}), "wing"),
            (
                json!({"bool": {"must": {"match": {"text": "wing"}}, "should": [{"term": {"t": "lift"}}], "filter": {"term": {"x": "no"}}}}),
                "wing lift",
            ),
            (
                json!({"function_score": {"query": {"match": {"text": "wing"}}}}),
                "wing",
            ),
        ];
        for (q, want) in cases {
            assert_eq!(query_text(&q).as_deref(), Some(want), "{q}");
        }
        assert_eq!(query_text(&json!({"match_all": {}})), None);
        assert_eq!(
            query_text(&json!({"bool": {"filter": {"term": {"x": "y"}}}})),
            None
        );
        assert_eq!(lucene_text("text:wing^2 lift"), "wing lift");
    }
}
