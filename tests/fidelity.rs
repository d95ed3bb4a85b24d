//! Client fidelity over HTTP: every field the rerank schemas accept does
//! what Cohere, Jina and TEI say it does (or is refused), model aliases
//! (the manifest's and a tenant's own), and TEI's `/info`. The real binary,
//! the real components; the Python clients themselves are in `clients.rs`.

use serde_json::{json, Value};

use crate::common::standard_manifest;
use crate::server::{add_tenant, assert_error, json_of, Server};

/// The standard manifest plus public aliases.
fn manifest_with_aliases(dir: &std::path::Path) {
    let text = format!(
        "{}\n[aliases]\n\"rerank-v3.5\" = \"lexical\"\n\"BAAI/bge-reranker-base\" = \"minilm\"\n",
        standard_manifest()
    );
    std::fs::write(dir.join("nboost.toml"), text).unwrap();
}

/// `(index, score)` of each result, best first.
fn ranking(v: &Value) -> Vec<(u64, f64)> {
    v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {v}"))
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["relevance_score"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn score_of(v: &Value, index: u64) -> f64 {
    ranking(v)
        .into_iter()
        .find(|(i, _)| *i == index)
        .unwrap_or_else(|| panic!("no index {index}: {v}"))
        .1
}

/// A long passage whose relevant sentence comes after 384 pre-tokens (and
/// as many tokens) of filler: past MiniLM's 256-token window, and exactly
/// two 192-pre-token chunks, so the third chunk is the sentence alone.
fn buried() -> String {
    let filler = "The weather was mild and the market was quiet that day. ".repeat(32);
    format!(
        "{filler}Lift on an aircraft wing comes from the pressure difference between its surfaces."
    )
}

const LIFT: &str = "what causes lift on an aircraft wing";

#[test]
fn rank_fields_rank_objects_on_the_named_fields() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &[]);
    let docs = json!([
        {"title": "capital of france", "text": "unrelated words here"},
        "a capital idea",
        {"title": "nothing", "body": "capital of france"}
    ]);
    // Without rank_fields an object is its `text`.
    let (status, v) = json_of(s.post(
        &key,
        "/v2/rerank",
        &json!({"model": "lexical", "query": "capital of france", "documents": [docs[0], docs[1]]}),
    ));
    assert_eq!(status, 200, "{v}");
    assert_eq!(ranking(&v)[0].0, 1, "{v}");
    // With it, the named fields in order; an object without `text` is fine.
    let (status, v) = json_of(s.post(
        &key,
        "/v2/rerank",
        &json!({"model": "lexical", "query": "capital of france", "documents": docs,
                "rank_fields": ["body", "title"], "return_documents": true}),
    ));
    assert_eq!(status, 200, "{v}");
    let order: Vec<u64> = ranking(&v).iter().map(|r| r.0).collect();
    assert_eq!(order[2], 1, "the string document matches one term: {v}");
    // The documents come back as sent: objects whole, strings as {text}.
    let by_index = |i: u64| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["index"] == i)
            .unwrap()["document"]
            .clone()
    };
    assert_eq!(by_index(2), docs[2]);
    assert_eq!(by_index(1), json!({"text": "a capital idea"}));
    // An object with none of the fields has no text to rank: it ranks last.
    let (status, v) = json_of(s.post(
        &key,
        "/v1/rerank",
        &json!({"model": "lexical", "query": "q", "documents": [{"a": "q"}, "q b"], "rank_fields": ["title"]}),
    ));
    assert_eq!(status, 200, "{v}");
    assert_eq!(ranking(&v), vec![(1, ranking(&v)[0].1), (0, 0.0)], "{v}");
    // Without rank_fields and without `text`: all its fields.
    let (status, v) = json_of(s.post(
        &key,
        "/v1/rerank",
        &json!({"model": "lexical", "query": "zebra", "documents": ["b", {"kind": "zebra", "n": 4}]}),
    ));
    assert_eq!(status, 200, "{v}");
    assert_eq!(ranking(&v)[0].0, 1, "{v}");
}

#[test]
fn max_tokens_per_doc_truncates_and_max_chunks_per_doc_finds_the_best_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &[]);
    // Lexical: a term past the budget no longer counts.
    let docs = json!([format!("{}zebra", "word ".repeat(50)), "zebra short"]);
    let call = |extra: Value| {
        let mut body = json!({"model": "lexical", "query": "zebra", "documents": docs});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, v) = json_of(s.post(&key, "/v2/rerank", &body));
        assert_eq!(status, 200, "{v}");
        v
    };
    assert!(score_of(&call(json!({})), 0) > 0.0);
    let cut = call(json!({"max_tokens_per_doc": 10}));
    assert_eq!(score_of(&cut, 0), 0.0, "zebra was cut off: {cut}");
    assert!(score_of(&cut, 1) > 0.0);

    // MiniLM: the relevant sentence is past the window; chunking finds it.
    let docs = json!([buried(), "Birds migrate with the seasons."]);
    let post = |extra: Value| {
        let mut body = json!({"model": "minilm", "query": LIFT, "documents": docs});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, v) = json_of(s.post(&key, "/v1/rerank", &body));
        assert_eq!(status, 200, "{v}");
        v
    };
    let whole = post(json!({}));
    let chunked = post(json!({"max_chunks_per_doc": 10}));
    assert!(
        score_of(&chunked, 0) > score_of(&whole, 0) + 0.2,
        "the best chunk holds the answer: {whole} vs {chunked}"
    );
    assert_eq!(ranking(&chunked)[0].0, 0, "{chunked}");
    let chunks = |v: &Value, i: u64| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["index"] == i)
            .unwrap()["chunks"]
            .clone()
    };
    // 398 pre-tokens in chunks of 192 (3/4 of 256).
    assert_eq!(chunks(&chunked, 0), 3, "{chunked}");
    assert_eq!(chunks(&chunked, 1), 1, "{chunked}");
    assert!(whole["results"][0].get("chunks").is_none(), "{whole}");
    // A cap on the chunks keeps the first ones: the answer is lost again.
    let capped = post(json!({"max_chunks_per_doc": 2}));
    assert_eq!(chunks(&capped, 0), 2, "{capped}");
    assert!(score_of(&capped, 0) < score_of(&chunked, 0), "{capped}");
}

#[test]
fn fields_are_implemented_or_refused_never_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &[]);
    let base = json!({"model": "lexical", "query": "q", "documents": ["q a", "b"]});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let m = assert_error(
        s.post(&key, "/v2/rerank", &with(json!({"priority": 1}))),
        422,
        "validation",
    );
    assert!(m.contains("unknown field `priority`"), "{m}");
    // JSON Schema integers may be written as floats; null is absent.
    let (status, v) = json_of(s.post(
        &key,
        "/v2/rerank",
        &with(json!({"top_n": 1.0, "return_documents": null})),
    ));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert!(v["results"][0].get("document").is_none());
    for bad in [
        json!({"top_n": 1.5}),
        json!({"max_tokens_per_doc": 0}),
        json!({"max_chunks_per_doc": -1}),
        json!({"return_documents": "yes"}),
    ] {
        assert_error(s.post(&key, "/v2/rerank", &with(bad)), 422, "validation");
    }
    let m = assert_error(
        s.post(
            &key,
            "/rerank",
            &json!({"model": "lexical", "query": "q", "texts": ["a"], "normalize": true}),
        ),
        422,
        "validation",
    );
    assert!(m.contains("unknown field `normalize`"), "{m}");
}

#[test]
fn tei_truncation_is_refused_or_kept_at_either_end() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &["--default-model", "minilm"]);
    let tei = |extra: Value| {
        let mut b =
            json!({"query": LIFT, "texts": [buried(), "Birds migrate."], "raw_scores": true});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s.post(&key, "/rerank", &b)
    };
    let m = assert_error(tei(json!({"truncate": false})), 422, "validation");
    assert!(m.contains("documents[0] has at least"), "{m}");
    let score = |extra: Value| {
        let (status, v) = json_of(tei(extra));
        assert_eq!(status, 200, "{v}");
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["index"] == 0)
            .unwrap()["score"]
            .as_f64()
            .unwrap()
    };
    let right = score(json!({"truncate": true, "truncation_direction": "Right"}));
    assert_eq!(right, score(json!({})), "Right is the default");
    let left = score(json!({"truncation_direction": "Left"}));
    assert!(
        left > right + 0.2,
        "the end holds the answer: {left} vs {right}"
    );
    // Short texts pass `truncate: false`.
    let (status, _) = json_of(s.post(
        &key,
        "/rerank",
        &json!({"query": LIFT, "texts": ["a wing"], "truncate": false}),
    ));
    assert_eq!(status, 200);
}

#[test]
fn aliases_public_and_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    manifest_with_aliases(dir.path());
    let data = dir.path().join("data");
    let key = add_tenant(&data, "acme", &[]);
    let other = add_tenant(&data, "globex", &[]);
    let s = Server::start(dir.path(), &[]);
    let rerank = |key: &str, model: &str| {
        s.post(
            key,
            "/v1/rerank",
            &json!({"model": model, "query": "wing lift", "documents": ["bread", "wing lift"]}),
        )
    };
    // A public alias answers as its component; the reply names the alias.
    let (_, direct) = json_of(rerank(&key, "lexical"));
    let (status, via) = json_of(rerank(&key, "rerank-v3.5"));
    assert_eq!(status, 200, "{via}");
    assert_eq!(via["model"], "rerank-v3.5");
    assert_eq!(ranking(&via), ranking(&direct));

    // A tenant's own alias, with a slash in its name.
    let put = |key: &str, name: &str, body: Value| {
        s.http
            .put(s.url(&format!("/v1/aliases/{name}")))
            .bearer_auth(key)
            .json(&body)
            .send()
            .unwrap()
    };
    let (status, v) = json_of(put(&key, "acme%2Fbest", json!({"component": "lexical"})));
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (v["name"].clone(), v["owner"].clone()),
        (json!("acme/best"), json!("tenant"))
    );
    let (status, v) = json_of(rerank(&key, "acme/best"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(ranking(&v), ranking(&direct));
    // Listings show each component's aliases, in the caller's view.
    let (_, list) = json_of(s.get(&key, "/v1/components"));
    let lexical = list["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "lexical")
        .unwrap()
        .clone();
    assert_eq!(
        lexical["aliases"],
        json!(["acme/best", "rerank-v3.5"]),
        "{list}"
    );
    let (_, aliases) = json_of(s.get(&key, "/v1/aliases"));
    assert_eq!(aliases["aliases"].as_array().unwrap().len(), 3, "{aliases}");
    // Another tenant sees none of it.
    assert_error(rerank(&other, "acme/best"), 404, "not_found");
    let (_, theirs) = json_of(s.get(&other, "/v1/components/lexical"));
    assert_eq!(theirs["aliases"], json!(["rerank-v3.5"]), "{theirs}");

    // What an alias may not be.
    let m = assert_error(
        put(&key, "minilm", json!({"component": "lexical"})),
        409,
        "conflict",
    );
    assert!(m.contains("may not shadow"), "{m}");
    let m = assert_error(
        put(&key, "x", json!({"component": "nope"})),
        404,
        "not_found",
    );
    assert_eq!(m, "unknown component `nope`");
    assert_error(
        put(&key, "rerank-v3.5", json!({"component": "minilm"})),
        403,
        "forbidden",
    );
    assert_error(
        put(&key, "a%20b", json!({"component": "lexical"})),
        400,
        "bad_request",
    );
    assert_error(
        put(&key, "y", json!({"target": "lexical"})),
        422,
        "validation",
    );

    // An alias of the tenant's own component breaks, clearly, when the
    // component is deleted.
    let up = s.put_component(
        &key,
        "mine",
        crate::server::read("nboost_reranker_lexical"),
        json!({}),
    );
    assert_eq!(up.status(), 201);
    let (status, _) = json_of(put(&key, "mine-alias", json!({"component": "mine"})));
    assert_eq!(status, 201);
    assert_eq!(rerank(&key, "mine-alias").status(), 200);
    assert_eq!(s.delete(&key, "/v1/components/mine").status(), 204);
    let m = assert_error(rerank(&key, "mine-alias"), 422, "validation");
    assert_eq!(
        m,
        "alias `mine-alias` names component `mine`, which no longer exists"
    );

    // Deleted: the name is gone.
    assert_eq!(s.delete(&key, "/v1/aliases/acme%2Fbest").status(), 204);
    assert_error(rerank(&key, "acme/best"), 404, "not_found");
}

#[test]
fn info_in_tei_shape() {
    let dir = tempfile::tempdir().unwrap();
    manifest_with_aliases(dir.path());
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(
        dir.path(),
        &[
            "--default-model",
            "BAAI/bge-reranker-base",
            "--max-documents",
            "50",
        ],
    );
    let (status, v) = json_of(s.get(&key, "/info"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model_id"], "BAAI/bge-reranker-base");
    assert_eq!(v["component"], "minilm");
    assert_eq!(v["aliases"], json!(["BAAI/bge-reranker-base"]));
    assert_eq!(v["max_input_length"], 256, "MiniLM's configure answer: {v}");
    assert_eq!(v["max_client_batch_size"], 50, "{v}");
    assert_eq!(v["auto_truncate"], true);
    assert!(v["model_type"]["reranker"].is_object(), "{v}");
    // A client that sends max_client_batch_size texts is served; one more
    // is refused.
    let texts: Vec<String> = (0..51).map(|i| format!("text {i}")).collect();
    let (status, _) = json_of(s.post(
        &key,
        "/rerank",
        &json!({"query": "q", "texts": texts[..50]}),
    ));
    assert_eq!(status, 200);
    assert_error(
        s.post(&key, "/rerank", &json!({"query": "q", "texts": texts})),
        422,
        "validation",
    );
    let (status, v) = json_of(s.get(&key, "/info?model=rerank-v3.5"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["component"].clone(), v["max_input_length"].clone()),
        (json!("lexical"), json!(0))
    );
    assert_error(s.get(&key, "/info?model=nope"), 404, "not_found");
    assert_error(s.get(&key, "/info?color=red"), 400, "bad_request");
}
