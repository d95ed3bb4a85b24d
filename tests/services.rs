//! Real PostgreSQL, S3-compatible (s3s-fs) and nginx servers on loopback
//! for the shared-state tests, started through `scripts/services.sh` (the
//! same script `.ci/run` and the benches use) and stopped by a watchdog
//! when the test process exits, however it exits.
//!
//! s3s-fs is a real S3 server (the `s3s` project's file-system backend,
//! SigV4 auth, path-style buckets); it is what installs here without
//! Docker. Its bucket is a directory, which lets a test remove one blob
//! from under a replica.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub(crate) use crate::common::free_port;
use crate::common::{backend_available, repo, stop_at_exit};

pub(crate) const S3_KEY: &str = "nboost-test";
pub(crate) const S3_SECRET: &str = "nboost-test-secret";

/// Whether the three servers can run here (required under CI).
pub(crate) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let pg = std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut d| d.next().is_some());
        let s3 = repo().join(".tools/s3s-fs/bin/s3s-fs").is_file();
        let nginx = Command::new("sh")
            .args(["-c", "command -v nginx || test -x /usr/sbin/nginx"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        backend_available(
            "PostgreSQL (Debian), s3s-fs (`scripts/services.sh s3 install`) and nginx",
            pg && s3 && nginx,
        )
    })
}

/// `scripts/services.sh ARGS`: its one stdout line.
pub(crate) fn services(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(repo().join("scripts/services.sh"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "services.sh {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A fresh directory for one service, with a watchdog that stops what
/// runs under it when this process ends.
pub(crate) fn service_dir(what: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = repo().join(format!(
        "target/services-test/{}-{}-{what}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    stop_at_exit(&repo().join("scripts/services.sh"), "stop-all", &dir);
    dir
}

/// A PostgreSQL server.
pub(crate) struct Pg {
    pub(crate) url: String,
    pub(crate) dir: PathBuf,
}

impl Pg {
    pub(crate) fn start() -> Pg {
        let dir = service_dir("pg");
        let url = services(&["pg", "start", &free_port().to_string(), path(&dir)]);
        Pg { url, dir }
    }

    /// A new, empty database on this server: its URL.
    pub(crate) fn database(&self) -> String {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("psql")
            .arg(&self.url)
            .args(["-v", "ON_ERROR_STOP=1", "-qc"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (base, _) = self.url.rsplit_once('/').unwrap();
        format!("{base}/{name}")
    }

    pub(crate) fn restart(&self) {
        services(&["pg", "restart", path(&self.dir)]);
    }
}

/// An S3-compatible server with bucket `nboost`.
pub(crate) struct S3 {
    pub(crate) url: String,
    pub(crate) dir: PathBuf,
}

impl S3 {
    pub(crate) fn start() -> S3 {
        let dir = service_dir("s3");
        let url = services(&["s3", "start", &free_port().to_string(), path(&dir)]);
        S3 { url, dir }
    }

    /// A prefix no other test uses.
    pub(crate) fn prefix(&self) -> String {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        format!(
            "p{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The directory behind `s3://nboost/PREFIX/`.
    pub(crate) fn bucket_dir(&self, prefix: &str) -> PathBuf {
        self.dir.join("root/nboost").join(prefix)
    }

    pub(crate) fn readonly(&self, on: bool) {
        services(&[
            "s3",
            if on { "readonly" } else { "writable" },
            path(&self.dir),
        ]);
    }

    /// The `AWS_*` environment a child `nboost` needs.
    pub(crate) fn env(&self, cmd: &mut Command) {
        cmd.env("AWS_ENDPOINT_URL", &self.url)
            .env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true");
    }

    /// The same as object_store options (in-process stores).
    pub(crate) fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.url.as_str()),
            ("aws_access_key_id", S3_KEY),
            ("aws_secret_access_key", S3_SECRET),
            ("aws_region", "us-east-1"),
            ("aws_allow_http", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// Servers shared by the tests that do not stop or break them.
pub(crate) fn shared() -> &'static (Pg, S3) {
    static BOTH: OnceLock<(Pg, S3)> = OnceLock::new();
    BOTH.get_or_init(|| (Pg::start(), S3::start()))
}

/// nginx in front of `upstreams` (`host:port`).
pub(crate) struct Nginx {
    pub(crate) url: String,
    pub(crate) dir: PathBuf,
}

impl Nginx {
    pub(crate) fn start(upstreams: &[String]) -> Nginx {
        let dir = service_dir("nginx");
        let port = free_port().to_string();
        let mut args = vec!["nginx", "start", &port, path(&dir)];
        args.extend(upstreams.iter().map(String::as_str));
        let url = services(&args);
        Nginx { url, dir }
    }

    /// The access log (each line records the upstream(s) tried).
    pub(crate) fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
