//! Distribution through a real OCI registry on loopback (the Distribution
//! registry server, Debian's `docker-registry`, started here): bundles,
//! components and the WIT package pushed and pulled with the real CLI;
//! pinned digests, trust, kinds and interrupted pulls.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{cache_dir, free_port, repo, standard_manifest, wasm};
use crate::server::{nboost, succeeds};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A Distribution registry serving plain HTTP on a free loopback port,
/// storing under a temporary directory; killed on drop.
struct RegistryServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RegistryServer {
    /// Started, or `None` (outside CI) when the package is not installed.
    fn start() -> Option<Self> {
        if !Path::new(REGISTRY_BIN).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{REGISTRY_BIN} is required under CI (scripts/bootstrap.sh installs docker-registry)"
            );
            eprintln!("skipped: {REGISTRY_BIN} is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = RegistryServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::blocking::get(format!("http://127.0.0.1:{port}/v2/"))
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    fn reference(&self, repo: &str) -> String {
        format!("127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = nboost();
        c.arg("--manifest")
            .arg(&self.manifest)
            .arg("--cache-dir")
            .arg(cache_dir())
            .args(args)
            .current_dir(self.dir.path());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeds(&mut self.cmd(args))
    }

    fn fails(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        out
    }

    /// A key pair `name.key` / `name.pub`, and a bundle of `component`
    /// signed with it.
    fn signed_bundle(&self, component: &str, key: &str, out: &str) {
        self.ok(&["keys", "generate", key]);
        self.ok(&[
            "bundle",
            "build",
            "-c",
            component,
            "-o",
            out,
            "--key",
            &format!("{key}.key"),
        ]);
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `sha256:…` a push printed on its `pin it: REPO@DIGEST` line.
fn pinned(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("pin it: "))
        .unwrap_or_else(|| panic!("no pin line in {stdout}"))
        .to_string()
}

/// Nothing under `dir` but `keep`.
fn only(dir: &Path, keep: &[&str]) -> bool {
    std::fs::read_dir(dir).unwrap().all(|e| {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        keep.contains(&name.as_str())
    })
}

#[test]
fn a_signed_bundle_round_trips_and_pins_and_trust_is_checked_after_pull() {
    let Some(reg) = RegistryServer::start() else {
        return;
    };
    let f = Fixture::new();
    f.signed_bundle("lexical", "ops", "lexical.nbb");
    let reference = format!("{}:0.1.0", reg.reference("edge/lexical"));
    let pushed = f.ok(&["bundle", "push", "lexical.nbb", &reference, "--plain-http"]);
    assert!(pushed.contains("signed by key"), "{pushed}");
    let pin = pinned(&pushed);

    // By tag and by digest: the same bytes, verified.
    for r in [reference.as_str(), pin.as_str()] {
        let out = f.ok(&[
            "bundle",
            "pull",
            r,
            "-o",
            "got/lexical.nbb",
            "--trusted-key",
            "ops.pub",
            "--plain-http",
        ]);
        assert!(out.contains("parts verified"), "{out}");
        assert_eq!(
            std::fs::read(f.path("got/lexical.nbb")).unwrap(),
            std::fs::read(f.path("lexical.nbb")).unwrap()
        );
        std::fs::remove_file(f.path("got/lexical.nbb")).unwrap();
    }

    // A pin the registry does not serve: refused.
    let wrong = format!(
        "{}@sha256:{}",
        reg.reference("edge/lexical"),
        "0".repeat(64)
    );
    let out = f.fails(&[
        "bundle",
        "pull",
        &wrong,
        "-o",
        "got/x.nbb",
        "--trusted-key",
        "ops.pub",
        "--plain-http",
    ]);
    assert!(
        stderr(&out).contains("registry") || stderr(&out).contains("digest"),
        "{}",
        stderr(&out)
    );

    // Signed by a key this node does not trust: pulled, refused, not kept.
    f.ok(&["keys", "generate", "stranger"]);
    let out = f.fails(&[
        "bundle",
        "pull",
        &reference,
        "-o",
        "got/lexical.nbb",
        "--trusted-key",
        "stranger.pub",
        "--plain-http",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("bundle refused"), "{}", stderr(&out));
    assert!(
        only(&f.path("got"), &[]),
        "a refused bundle left files behind"
    );

    // A pulled bundle serves: the edge path end to end.
    f.ok(&[
        "bundle",
        "pull",
        &pin,
        "-o",
        "got/lexical.nbb",
        "--trusted-key",
        "ops.pub",
        "--plain-http",
    ]);
    let out = f.ok(&[
        "rerank",
        "--bundle",
        "got/lexical.nbb",
        "--trusted-key",
        "ops.pub",
        "-q",
        "wing lift",
        "--json",
        "--passage",
        "bread",
        "--passage",
        "the lift of a wing",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["index"], 1, "{v}");
}

#[test]
fn a_component_is_a_wasm_oci_artifact_and_round_trips() {
    let Some(reg) = RegistryServer::start() else {
        return;
    };
    let f = Fixture::new();
    let file = wasm("nboost_reranker_lexical");
    let reference = format!("{}:0.1.0", reg.reference("plugins/lexical"));
    let pushed = f.ok(&[
        "components",
        "push",
        file.to_str().unwrap(),
        &reference,
        "--plain-http",
    ]);
    let pin = pinned(&pushed);

    // The CNCF TAG-Runtime layout, as the registry stores it.
    let manifest: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/v2/plugins/lexical/manifests/0.1.0",
            reg.port
        ))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json",
        "{manifest}"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"], "application/wasm",
        "{manifest}"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);

    let out = f.ok(&[
        "components",
        "pull",
        &pin,
        "-o",
        "lexical.wasm",
        "--plain-http",
    ]);
    assert!(out.contains("reranker-plugin"), "{out}");
    assert_eq!(
        std::fs::read(f.path("lexical.wasm")).unwrap(),
        std::fs::read(&file).unwrap()
    );

    // A bundle is not a component, and not a file that is no component.
    f.signed_bundle("lexical", "ops", "lexical.nbb");
    let b = format!("{}:1", reg.reference("edge/b"));
    f.ok(&["bundle", "push", "lexical.nbb", &b, "--plain-http"]);
    let out = f.fails(&["components", "pull", &b, "-o", "b.wasm", "--plain-http"]);
    assert!(
        stderr(&out).contains("not `application/vnd.wasm.config.v0+json`"),
        "{}",
        stderr(&out)
    );
    assert!(!f.path("b.wasm").exists());
    std::fs::write(f.path("junk.wasm"), b"\0asm junk").unwrap();
    let out = f.fails(&[
        "components",
        "push",
        "junk.wasm",
        &reference,
        "--plain-http",
    ]);
    assert!(stderr(&out).contains("junk.wasm"), "{}", stderr(&out));
}

#[test]
fn the_wit_package_is_published_in_wkg_layout_and_reads_back() {
    let Some(reg) = RegistryServer::start() else {
        return;
    };
    let f = Fixture::new();
    let reference = format!("{}:0.1.0", reg.reference("nboost/reranker"));
    let wit = repo().join("wit");
    let out = f.ok(&[
        "wit",
        "push",
        &reference,
        "--dir",
        wit.to_str().unwrap(),
        "--plain-http",
    ]);
    assert!(out.contains("nboost:reranker@0.1.0"), "{out}");
    let text = f.ok(&["wit", "pull", &reference, "--plain-http"]);
    assert!(text.contains("package nboost:reranker@0.1.0"), "{text}");
    for item in [
        "interface reranker",
        "world nn-reranker-plugin",
        "configure: func",
        "score: func",
    ] {
        assert!(text.contains(item), "{item} missing from {text}");
    }
    // A component's artifact is not a WIT package.
    let c = format!("{}:1", reg.reference("plugins/x"));
    f.ok(&[
        "components",
        "push",
        wasm("nboost_reranker_lexical").to_str().unwrap(),
        &c,
        "--plain-http",
    ]);
    let out = f.fails(&["wit", "pull", &c, "--plain-http"]);
    assert!(
        stderr(&out).contains("not a WIT package"),
        "{}",
        stderr(&out)
    );
}

/// A TCP relay to `upstream` that cuts every connection once it has sent
/// `limit` bytes back: a registry connection dying mid-download.
fn cutting_relay(upstream: u16, limit: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
            });
            std::thread::spawn(move || {
                let mut sent = 0;
                let mut buf = [0u8; 16 << 10];
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 || sent + n > limit {
                        break;
                    }
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n;
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

#[test]
fn an_interrupted_pull_installs_nothing() {
    let Some(reg) = RegistryServer::start() else {
        return;
    };
    let f = Fixture::new();
    // 18 MB (a whole CPython inside), so the cut lands mid-blob.
    f.signed_bundle("lexical-py", "ops", "py.nbb");
    f.ok(&[
        "bundle",
        "push",
        "py.nbb",
        &format!("{}:1", reg.reference("edge/py")),
        "--plain-http",
    ]);
    let relay = cutting_relay(reg.port, 1 << 20);
    let via = format!("127.0.0.1:{relay}/edge/py:1");
    std::fs::create_dir_all(f.path("bundles")).unwrap();
    std::fs::write(f.path("bundles/keep.nbb"), b"already here").unwrap();
    let out = f.fails(&[
        "bundle",
        "pull",
        &via,
        "-o",
        "bundles/py.nbb",
        "--trusted-key",
        "ops.pub",
        "--plain-http",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("registry"), "{}", stderr(&out));
    assert!(
        only(&f.path("bundles"), &["keep.nbb"]),
        "an interrupted pull left files"
    );
    assert_eq!(
        std::fs::read(f.path("bundles/keep.nbb")).unwrap(),
        b"already here"
    );
    // The same pull, uninterrupted, installs.
    let direct = format!("{}:1", reg.reference("edge/py"));
    f.ok(&[
        "bundle",
        "pull",
        &direct,
        "-o",
        "bundles/py.nbb",
        "--trusted-key",
        "ops.pub",
        "--plain-http",
    ]);
    assert!(f.path("bundles/py.nbb").is_file());
}
