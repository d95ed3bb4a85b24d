//! Signed bundles: build, sign, verify with the real CLI; every way a
//! bundle can be wrong is refused naming the part, and a refused bundle
//! leaves nothing behind; a good one reranks like its manifest component.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::standard_manifest;
use crate::server::nboost;

struct Fixture {
    dir: tempfile::TempDir,
    manifest: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("nboost.toml");
        std::fs::write(&manifest, standard_manifest()).unwrap();
        Fixture { dir, manifest }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        nboost()
            .arg("--manifest")
            .arg(&self.manifest)
            .arg("--cache-dir")
            .arg(crate::common::cache_dir())
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        crate::server::succeeds(
            nboost()
                .arg("--manifest")
                .arg(&self.manifest)
                .arg("--cache-dir")
                .arg(crate::common::cache_dir())
                .args(args)
                .current_dir(self.dir.path()),
        )
    }

    /// A bundle of `component` at `out`, signed with `key` (a `.key` file).
    fn build(&self, component: &str, out: &str, key: &str) -> String {
        self.ok(&["bundle", "build", "-c", component, "-o", out, "--key", key])
    }

    /// `nboost bundle verify` of `file` with `key`: the error text, or
    /// `None` when it verified. Refusals exit 3.
    fn refusal(&self, file: &Path, key: &str) -> Option<String> {
        let out = self.run(&[
            "bundle",
            "verify",
            file.to_str().unwrap(),
            "--trusted-key",
            key,
        ]);
        if out.status.success() {
            return None;
        }
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        Some(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// The entries of a bundle, in order.
fn entries(file: &Path) -> Vec<(String, Vec<u8>)> {
    let mut tar = tar::Archive::new(std::fs::File::open(file).unwrap());
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().to_string();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

fn write(file: &Path, entries: &[(String, Vec<u8>)]) {
    let mut tar = tar::Builder::new(std::fs::File::create(file).unwrap());
    for (name, bytes) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, bytes.as_slice()).unwrap();
    }
    tar.finish().unwrap();
}

#[test]
fn a_signed_bundle_verifies_and_reranks_like_its_component() {
    let f = Fixture::new();
    f.ok(&["keys", "generate", "op"]);
    let built = f.build("cross-encoder", "ce.nbb", "op.key");
    assert!(
        built.contains("3 parts") && built.contains("signed"),
        "{built}"
    );
    assert_eq!(f.refusal(&f.path("ce.nbb"), "op.pub"), None);
    let inspect: serde_json::Value =
        serde_json::from_str(&f.ok(&["bundle", "inspect", "ce.nbb"])).unwrap();
    assert_eq!(inspect["manifest"]["wit"], "nboost:reranker/reranker@0.1.0");
    let kinds: Vec<&str> = inspect["manifest"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["component", "graph", "setting-file"]);

    let q = [
        "-q",
        "wing lift",
        "--passage",
        "bread",
        "--passage",
        "the lift of a wing",
        "--json",
    ];
    let via_bundle = f.ok(&[
        &["rerank", "--bundle", "ce.nbb", "--trusted-key", "op.pub"][..],
        &q,
    ]
    .concat());
    let via_manifest = f.ok(&[&["rerank", "-c", "cross-encoder"][..], &q].concat());
    assert_eq!(via_bundle, via_manifest);

    // Unsigned, then signed afterwards.
    f.ok(&["bundle", "build", "-c", "cross-encoder", "-o", "plain.nbb"]);
    let e = f.refusal(&f.path("plain.nbb"), "op.pub").unwrap();
    assert!(e.contains("not signed"), "{e}");
    let out = f.run(&[
        "rerank",
        "--bundle",
        "plain.nbb",
        "--trusted-key",
        "op.pub",
        "-q",
        "x",
        "--passage",
        "y",
    ]);
    assert_eq!(out.status.code(), Some(3));
    f.ok(&["bundle", "sign", "plain.nbb", "--key", "op.key"]);
    assert_eq!(f.refusal(&f.path("plain.nbb"), "op.pub"), None);
}

#[test]
fn every_wrong_bundle_is_refused_naming_the_part() {
    let f = Fixture::new();
    f.ok(&["keys", "generate", "op"]);
    f.ok(&["keys", "generate", "stranger"]);
    f.build("cross-encoder", "ce.nbb", "op.key");
    let good = entries(&f.path("ce.nbb"));
    assert_eq!(good[0].0, "bundle.toml");
    assert_eq!(good[1].0, "bundle.sig");

    // A byte of each entry flipped.
    for (i, (name, _)) in good.iter().enumerate() {
        let mut bad = good.clone();
        let mid = bad[i].1.len() / 2;
        bad[i].1[mid] ^= 0x01;
        let file = f.path(&format!("flip-{i}.nbb"));
        write(&file, &bad);
        let e = f
            .refusal(&file, "op.pub")
            .unwrap_or_else(|| panic!("{name} flipped: accepted"));
        let named = if i == 1 { "signature" } else { name.as_str() };
        assert!(e.contains(named), "{name} flipped: {e}");
    }

    // Truncated at every part boundary and mid-part.
    let bytes = std::fs::read(f.path("ce.nbb")).unwrap();
    for cut in [100, 2000, bytes.len() / 2, bytes.len() - 1500] {
        let file = f.path(&format!("cut-{cut}.nbb"));
        std::fs::write(&file, &bytes[..cut]).unwrap();
        assert!(
            f.refusal(&file, "op.pub").is_some(),
            "cut at {cut}: accepted"
        );
    }

    // A part missing, an extra part, parts swapped.
    let mut missing = good.clone();
    missing.pop();
    write(&f.path("missing.nbb"), &missing);
    let e = f.refusal(&f.path("missing.nbb"), "op.pub").unwrap();
    assert!(
        e.contains("files/tokenizer") && e.contains("missing"),
        "{e}"
    );
    let mut extra = good.clone();
    extra.push(("payload.so".into(), b"\x7fELF".to_vec()));
    write(&f.path("extra.nbb"), &extra);
    let e = f.refusal(&f.path("extra.nbb"), "op.pub").unwrap();
    assert!(e.contains("payload.so") && e.contains("not listed"), "{e}");

    // Signed by another key; signed by a trusted key but expired; revoked.
    assert!(f
        .refusal(&f.path("ce.nbb"), "stranger.pub")
        .unwrap()
        .contains("not trusted"));
    f.ok(&[
        "bundle",
        "build",
        "-c",
        "cross-encoder",
        "-o",
        "old.nbb",
        "--key",
        "op.key",
        "--expires-in-days",
        "0",
    ]);
    assert!(f
        .refusal(&f.path("old.nbb"), "op.pub")
        .unwrap()
        .contains("expired"));
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&good[0].1));
    std::fs::write(f.path("revoked.txt"), format!("# revoked\n{digest}\n")).unwrap();
    let out = f.run(&[
        "bundle",
        "verify",
        "ce.nbb",
        "--trusted-key",
        "op.pub",
        "--revoked",
        "revoked.txt",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));
}

#[test]
fn a_refused_bundle_leaves_nothing_behind() {
    let f = Fixture::new();
    f.ok(&["keys", "generate", "op"]);
    f.build("cross-encoder", "ce.nbb", "op.key");
    let key = nboost::bundle::read_public(&f.path("op.pub")).unwrap();
    let mut bad = entries(&f.path("ce.nbb"));
    let last = bad.len() - 1;
    bad[last].1[0] ^= 0x01;
    write(&f.path("bad.nbb"), &bad);
    let dest = f.path("unpacked");
    let policy = nboost::bundle::Policy::default();
    let err = nboost::bundle::open(&f.path("bad.nbb"), &[key], &policy, &dest).unwrap_err();
    assert!(err.to_string().contains("files/tokenizer"), "{err}");
    assert!(!dest.exists());
    assert!(!dest.with_extension("staging").exists());
    let opened = nboost::bundle::open(&f.path("ce.nbb"), &[key], &policy, &dest).unwrap();
    assert!(opened.dir.join("component.wasm").is_file());
}

#[test]
fn an_edge_node_serves_only_trusted_bundles_and_refuses_uploads() {
    let f = Fixture::new();
    f.ok(&["keys", "generate", "op"]);
    f.ok(&["keys", "generate", "stranger"]);
    let bundles = f.path("bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    f.build("cross-encoder", "bundles/ce.nbb", "op.key");
    f.build("lexical", "bundles/lexical.nbb", "stranger.key");
    let key = crate::server::add_tenant(&f.path("data"), "acme", &[]);
    let s = crate::server::Server::start(
        f.dir.path(),
        &[
            "--edge",
            "--bundles",
            bundles.to_str().unwrap(),
            "--trusted-key",
            f.path("op.pub").to_str().unwrap(),
        ],
    );
    let body = serde_json::json!({"model": "cross-encoder", "query": "wing lift",
                                  "documents": ["bread", "the lift of a wing"]});
    let r = s.post(&key, "/v1/rerank", &body);
    assert_eq!(r.status(), 200, "{}", s.log_text());
    // The stranger's bundle was refused (and said so); the manifest's
    // components are not served on an edge node.
    for model in ["lexical", "minilm"] {
        let r = s.post(
            &key,
            "/v1/rerank",
            &serde_json::json!({"model": model, "query": "q", "documents": ["d"]}),
        );
        assert_eq!(r.status(), 404, "{model}");
    }
    assert!(
        s.log_text().contains("lexical.nbb") && s.log_text().contains("not trusted"),
        "{}",
        s.log_text()
    );
    let wasm = std::fs::read(crate::common::wasm("nboost_reranker_lexical")).unwrap();
    let r = s.put_component(&key, "mine", wasm, serde_json::json!({}));
    assert_eq!(r.status(), 403);
    let r = s.delete(&key, "/v1/components/cross-encoder");
    assert_eq!(r.status(), 403);
}

#[test]
fn a_bundle_verified_before_is_reused_only_while_its_file_is_unchanged() {
    let f = Fixture::new();
    f.ok(&["keys", "generate", "op"]);
    f.build("lexical", "lx.nbb", "op.key");
    let rerank = [
        "rerank",
        "--bundle",
        "lx.nbb",
        "--trusted-key",
        "op.pub",
        "-q",
        "wing lift",
        "--passage",
        "the lift of a wing",
        "--json",
    ];
    let first = f.ok(&rerank);
    // The second start takes the verified unpack; the answer is the same.
    assert_eq!(f.ok(&rerank), first);
    // A byte of the component changed in the file: verified in full again,
    // and refused, cache or not.
    let path = f.path("lx.nbb");
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let at = good.windows(4).position(|w| w == b"\0asm").unwrap() + 100;
    bad[at] ^= 0x55;
    std::fs::write(&path, &bad).unwrap();
    let out = f.run(&rerank);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("component.wasm"));
    std::fs::write(&path, &good).unwrap();
    assert_eq!(f.ok(&rerank), first);
}
