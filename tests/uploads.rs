//! `nboost serve` uploads: validation, versions, listings, isolation
//! between tenants, and tenants' graphs feeding their components.

#![allow(unused_imports, reason = "shared test imports")]

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use reqwest::blocking::multipart;
use serde_json::{json, Value};

use crate::common::{model_file, repo, wasm};
use crate::server::*;

#[test]
fn uploads_are_validated_versioned_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &[]);

    // Not wasm, a core module, a component that fails `configure`.
    let m = assert_error(
        s.put_component(&key, "mine", b"hello".to_vec(), json!({})),
        422,
        "validation",
    );
    assert!(m.contains("not a WebAssembly file"), "{m}");
    let core = wat::parse_str("(module)").unwrap();
    let m = assert_error(
        s.put_component(&key, "mine", core, json!({})),
        422,
        "validation",
    );
    assert!(m.contains("core WebAssembly module"), "{m}");
    let m = assert_error(
        s.put_component(
            &key,
            "mine",
            read("nboost_hostile"),
            json!({"settings": {"attack": "bogus"}}),
        ),
        422,
        "validation",
    );
    assert!(m.contains("rejected its configuration"), "{m}");
    let m = assert_error(
        s.put_component(&key, "mine", read("nboost_hostile_sockets"), json!({})),
        422,
        "validation",
    );
    assert!(m.contains("sockets"), "{m}");
    assert_error(
        s.put_component(
            &key,
            "mine",
            read("nboost_reranker_lexical"),
            json!({"bogus": 1}),
        ),
        422,
        "validation",
    );
    assert_error(s.get(&key, "/v1/components/mine"), 404, "not_found");

    // Version 1, then 2 with other bytes.
    let lexical = read("nboost_reranker_lexical");
    let r = s.put_component(
        &key,
        "mine",
        lexical.clone(),
        json!({"description": "bm25", "settings": {"k1": 1.2, "b": "0.75"}}),
    );
    let (status, v) = json_of(r);
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["version"], 1);
    assert_eq!(v["digest"], sha256(&lexical));
    assert_eq!(v["world"], "reranker-plugin");
    assert_eq!(v["owner"], "tenant");
    let (status, v) = json_of(s.post(
        &key,
        "/v1/rerank",
        &json!({"model": "mine", "query": QUERY, "documents": docs()}),
    ));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"][0]["index"], 1);

    let hostile = read("nboost_hostile");
    let (status, v) = json_of(s.put_component(&key, "mine", hostile.clone(), json!({})));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 2);
    let (_, v) = json_of(s.get(&key, "/v1/components/mine"));
    assert_eq!(v["version"], 2);
    assert_eq!(v["digest"], sha256(&hostile));
    assert_eq!(v["world"], "nn-reranker-plugin");
    // The hostile plugin's harmless mode scores by length: version 2 answers.
    let (_, v) = json_of(s.post(
        &key,
        "/v1/rerank",
        &json!({"model": "mine", "query": "q", "documents": ["aaa", "a", "aaaaa"]}),
    ));
    assert_eq!(v["results"][0]["index"], 2, "{v}");
    assert_eq!(v["results"][0]["relevance_score"], 5.0, "{v}");

    // Listing: own first, then the public ones, each with digest and world.
    let (_, v) = json_of(s.get(&key, "/v1/components"));
    let list = v["components"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "mine",
            "cross-encoder",
            "lexical",
            "lexical-py",
            "minilm",
            "minilm-js"
        ],
        "{v}"
    );
    for c in list {
        assert!(c["digest"].as_str().unwrap().starts_with("sha256:"), "{c}");
        assert!(c["world"].is_string(), "{c}");
    }
    let (_, v) = json_of(s.get(&key, "/v1/components/minilm"));
    assert_eq!(v["owner"], "public");
    assert_eq!(v["world"], "nn-reranker-plugin");
    assert_eq!(v["graphs"], json!(["all-minilm-l6-v2"]));

    // Public components are read-only.
    assert_error(
        s.put_component(&key, "lexical", lexical.clone(), json!({})),
        403,
        "forbidden",
    );
    assert_error(s.delete(&key, "/v1/components/lexical"), 403, "forbidden");
    assert_error(
        s.delete(&key, "/v1/graphs/all-minilm-l6-v2"),
        403,
        "forbidden",
    );

    // Delete, then it is gone (and so is its blob).
    assert_eq!(s.delete(&key, "/v1/components/mine").status(), 204);
    assert_error(s.get(&key, "/v1/components/mine"), 404, "not_found");
    assert_error(s.delete(&key, "/v1/components/mine"), 404, "not_found");
    let blobs = dir.path().join("data/blobs");
    assert_eq!(
        std::fs::read_dir(&blobs).unwrap().count(),
        0,
        "unreferenced blobs are collected"
    );

    // A raw body (no form, so no config) is an upload too.
    let r = s
        .http
        .put(s.url("/v1/components/raw"))
        .bearer_auth(&key)
        .header("content-type", "application/wasm")
        .body(lexical.clone())
        .send()
        .unwrap();
    let (status, v) = json_of(r);
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["digest"], sha256(&lexical));
    // A form without a `file` part is a 400.
    let form = multipart::Form::new().text("config", "{}");
    let r = s
        .http
        .put(s.url("/v1/components/raw"))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .unwrap();
    assert_error(r, 400, "bad_request");
}

/// Everything tenant B tries on tenant A's names fails exactly as it does
/// on names nobody owns.
#[test]
fn tenants_cannot_see_call_overwrite_or_delete_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let a = add_tenant(&data, "tenant-a", &[]);
    let b = add_tenant(&data, "tenant-b", &[]);
    let s = Server::start(dir.path(), &[]);
    let lexical = read("nboost_reranker_lexical");
    let hostile = read("nboost_hostile");
    assert_eq!(
        s.put_component(&a, "secret", lexical.clone(), json!({}))
            .status(),
        201
    );
    let tok = std::fs::read(model_file("tiny-cross-encoder", "tokenizer.json")).unwrap();
    assert_eq!(
        s.put_graph(&a, "secret-tok", tok.clone(), "text").status(),
        201
    );

    // List: B sees none of A's.
    let (_, v) = json_of(s.get(&b, "/v1/components"));
    assert!(!v.to_string().contains("secret"), "{v}");
    let (_, v) = json_of(s.get(&b, "/v1/graphs"));
    assert!(!v.to_string().contains("secret"), "{v}");

    // Call, read, delete: the same 404 as for a name nobody has.
    for (name, what) in [("secret", "component"), ("nobody-has-this", "component")] {
        let body = json!({"model": name, "query": "q", "documents": ["a"]});
        let m = assert_error(s.post(&b, "/v1/rerank", &body), 404, "not_found");
        assert_eq!(m, format!("unknown {what} `{name}`"));
        let m = assert_error(
            s.get(&b, &format!("/v1/components/{name}")),
            404,
            "not_found",
        );
        assert_eq!(m, format!("unknown {what} `{name}`"));
        let m = assert_error(
            s.delete(&b, &format!("/v1/components/{name}")),
            404,
            "not_found",
        );
        assert_eq!(m, format!("unknown {what} `{name}`"));
    }
    for name in ["secret-tok", "nobody-has-this"] {
        let m = assert_error(s.get(&b, &format!("/v1/graphs/{name}")), 404, "not_found");
        assert_eq!(m, format!("unknown graph `{name}`"));
        assert_error(
            s.delete(&b, &format!("/v1/graphs/{name}")),
            404,
            "not_found",
        );
        // Nor can B's components use A's graphs.
        let config = json!({"settings": {"attack": "none"}, "graphs": [name]});
        let m = assert_error(
            s.put_component(&b, "uses-it", hostile.clone(), config),
            422,
            "validation",
        );
        assert_eq!(m, format!("unknown graph `{name}`"));
        let config = json!({"setting_files": {"tokenizer": name}});
        let m = assert_error(
            s.put_component(&b, "uses-it", hostile.clone(), config),
            422,
            "validation",
        );
        assert!(m.contains(&format!("unknown graph `{name}`")), "{m}");
    }

    // Overwrite: B's upload of the same name lands in B's namespace.
    let (status, v) = json_of(s.put_component(&b, "secret", hostile.clone(), json!({})));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["version"], 1);
    assert_eq!(
        s.put_graph(&b, "secret-tok", b"b's own text".to_vec(), "text")
            .status(),
        201
    );
    let (_, v) = json_of(s.get(&a, "/v1/components/secret"));
    assert_eq!(v["version"], 1);
    assert_eq!(v["digest"], sha256(&lexical), "A's component is untouched");
    let (_, v) = json_of(s.get(&a, "/v1/graphs/secret-tok"));
    assert_eq!(v["digest"], sha256(&tok), "A's graph is untouched");
    // Each calls its own.
    let body = json!({"model": "secret", "query": QUERY, "documents": docs()});
    let (_, va) = json_of(s.post(&a, "/v1/rerank", &body));
    let (_, vb) = json_of(s.post(&b, "/v1/rerank", &body));
    assert_eq!(va["results"][0]["index"], 1, "A's is BM25: {va}");
    assert_eq!(
        vb["results"][0]["relevance_score"], 85.0,
        "B's scores by length: {vb}"
    );
    // B deletes its own; A's stays.
    assert_eq!(s.delete(&b, "/v1/components/secret").status(), 204);
    assert_eq!(s.get(&a, "/v1/components/secret").status(), 200);
    assert_eq!(s.post(&a, "/v1/rerank", &body).status(), 200);
}

#[test]
fn tenant_graphs_feed_tenant_components() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &[]);
    let graph = std::fs::read(model_file("tiny-cross-encoder", "model.onnx")).unwrap();
    let tok = std::fs::read(model_file("tiny-cross-encoder", "tokenizer.json")).unwrap();
    // A broken ONNX file is refused at upload; a text file must be UTF-8.
    let m = assert_error(
        s.put_graph(&key, "my-ce", b"not onnx".to_vec(), "onnx"),
        422,
        "validation",
    );
    assert!(m.contains("cannot be loaded"), "{m}");
    assert_error(
        s.put_graph(&key, "my-tok", vec![0xff, 0xfe], "text"),
        422,
        "validation",
    );
    let (status, v) = json_of(s.put_graph(&key, "my-ce", graph.clone(), "onnx"));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["format"], "onnx");
    assert_eq!(v["digest"], sha256(&graph));
    // A form with a `config` part picks the format there.
    let form = multipart::Form::new()
        .part("file", multipart::Part::bytes(tok))
        .text(
            "config",
            r#"{"format": "text", "description": "the tokenizer"}"#,
        );
    let r = s
        .http
        .put(s.url("/v1/graphs/my-tok"))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .unwrap();
    let (status, v) = json_of(r);
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["format"], "text");
    assert_eq!(v["description"], "the tokenizer");

    let ce = read("nboost_reranker_cross_encoder");
    let config = json!({"graphs": ["my-ce"], "settings": {"graph": "my-ce"}, "setting-files": {"tokenizer": "my-tok"}});
    let (status, v) = json_of(s.put_component(&key, "my-reranker", ce.clone(), config));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["graphs"], json!(["my-ce"]));
    // Same graph, same tokenizer, same component as the public
    // cross-encoder: same scores.
    let body = |model: &str| json!({"model": model, "query": QUERY, "documents": docs()});
    let (status, mine) = json_of(s.post(&key, "/v1/rerank", &body("my-reranker")));
    assert_eq!(status, 200, "{mine}");
    let (_, public) = json_of(s.post(&key, "/v1/rerank", &body("cross-encoder")));
    assert_eq!(mine["results"], public["results"]);
    // A text graph cannot be loaded as a model.
    let config = json!({"graphs": ["my-tok"], "settings": {"graph": "my-tok"}, "setting_files": {"tokenizer": "my-tok"}});
    let m = assert_error(
        s.put_component(&key, "wrong", ce, config),
        422,
        "validation",
    );
    assert!(m.contains("format `text`"), "{m}");
    // Deleting the graph breaks the component that needs it, clearly.
    assert_eq!(s.delete(&key, "/v1/graphs/my-ce").status(), 204);
    let m = assert_error(
        s.post(&key, "/v1/rerank", &body("my-reranker")),
        422,
        "validation",
    );
    assert!(m.contains("unknown graph `my-ce`"), "{m}");
}
