//! Replicas over shared state: three `nboost serve` processes on one real
//! PostgreSQL and one real S3-compatible server (see `services`), behind a
//! real nginx where the test needs a balancer.
//!
//! Propagation is observed, never slept for: every wait is a bounded poll
//! for the state the test expects.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::server::{json_of, nboost, read, succeeds, Server};
use crate::services::{self, free_port, Nginx, Pg, S3};

pub(crate) const DOCS: [&str; 3] = [
    "wings of birds",
    "the boundary layer of a flat plate in supersonic flow",
    "a plate",
];
pub(crate) const QUERY: &str = "boundary layer flat plate";

/// One tenant's shared state: a database, a bucket prefix, its key.
pub(crate) struct Shared<'a> {
    pub(crate) db: String,
    pub(crate) s3: &'a S3,
    pub(crate) prefix: String,
    pub(crate) root: tempfile::TempDir,
    pub(crate) key: String,
}

impl<'a> Shared<'a> {
    /// A fresh database on `pg` and prefix on `s3`, with tenant `acme`.
    pub(crate) fn new(pg: &Pg, s3: &'a S3) -> Shared<'a> {
        let db = pg.database();
        let prefix = s3.prefix();
        let root = tempfile::tempdir().unwrap();
        let mut this = Shared {
            db,
            s3,
            prefix,
            root,
            key: String::new(),
        };
        let key = succeeds(
            this.cli()
                .args(["tenants", "add", "acme"])
                .args(this.args()),
        );
        this.key = key.trim().to_string();
        assert!(this.key.starts_with("nbk_"), "{key}");
        this
    }

    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "--database-url".into(),
            self.db.clone(),
            "--object-store".into(),
            format!("s3://nboost/{}", self.prefix),
            "--data-dir".into(),
            self.root.path().join("cli").display().to_string(),
        ]
    }

    /// `nboost` with the object store's environment.
    pub(crate) fn cli(&self) -> Command {
        let mut c = nboost();
        self.s3.env(&mut c);
        c
    }

    /// A replica named `name` (its own data and artifact cache) on
    /// `listen`.
    pub(crate) fn replica(&self, name: &str, listen: &str) -> Server {
        self.replica_with(name, listen, &[])
    }

    /// [`Shared::replica`] with global flags.
    pub(crate) fn replica_with(&self, name: &str, listen: &str, globals: &[&str]) -> Server {
        let mut cli = self.cli();
        cli.args(globals);
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let args = [
            "--database-url".to_string(),
            self.db.clone(),
            "--object-store".into(),
            format!("s3://nboost/{}", self.prefix),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::spawn(cli, &dir, &dir.join("cache"), listen, &args)
    }

    pub(crate) fn bucket(&self) -> PathBuf {
        self.s3.bucket_dir(&self.prefix)
    }
}

pub(crate) fn rerank(http: &Client, base: &str, key: &str, model: &str) -> (u16, Value) {
    let r = http
        .post(format!("{base}/v1/rerank"))
        .bearer_auth(key)
        .json(&json!({"model": model, "query": QUERY, "documents": DOCS}))
        .send();
    match r {
        Ok(r) => json_of(r),
        Err(e) => (0, json!({ "transport": e.to_string() })),
    }
}

/// The first index of a rerank answer.
pub(crate) fn top(v: &Value) -> i64 {
    v["results"][0]["index"].as_i64().unwrap_or(-1)
}

/// Bounded poll (10 s) until `f` holds; how long it took.
pub(crate) fn until(what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("never: {what}");
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .map(|e| {
                if e.path().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

#[test]
fn the_store_suite_passes_on_postgres_and_s3() {
    if !services::available() {
        return;
    }
    let (pg, s3) = services::shared();
    let dirs = std::cell::RefCell::new(Vec::new());
    nboost::store::suite::run_all(&mut || {
        let dir = tempfile::tempdir().unwrap();
        let config = nboost::store::shared::SharedConfig {
            database_url: pg.database(),
            object_store: format!("s3://nboost/{}", s3.prefix()),
            s3_options: s3.options(),
            pool_size: 4,
            garbage_min_age: Duration::ZERO,
            heartbeat: false,
        };
        let store = nboost::store::shared::open(dir.path(), &config).unwrap();
        dirs.borrow_mut().push(dir);
        store
    });
}

#[test]
fn what_one_replica_is_given_every_replica_serves() {
    if !services::available() {
        return;
    }
    let (pg, s3) = services::shared();
    let shared = Shared::new(pg, s3);
    let replicas: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|n| shared.replica(n, "127.0.0.1:0"))
        .collect();
    let (a, b, c) = (&replicas[0], &replicas[1], &replicas[2]);
    let key = &shared.key;

    // Version 1 (BM25: the passage about the plate's boundary layer first),
    // uploaded through A, is served by B and C.
    let r = a.put_component(key, "mine", read("nboost_reranker_lexical"), json!({}));
    let (status, v) = json_of(r);
    assert_eq!(status, 201, "{v}");
    for s in [b, c] {
        until("B and C serve version 1", || {
            let (status, v) = rerank(&s.http, &s.base, key, "mine");
            status == 200 && top(&v) == 1
        });
    }
    // B and C loaded A's compiled artifact from the bucket instead of
    // compiling it again.
    assert!(files_under(&shared.bucket().join("artifacts")) >= 1);
    for s in [b, c] {
        assert!(
            s.log_text().contains("artifact from the shared store"),
            "{}",
            s.log_text()
        );
    }

    // Version 2 (the hostile plugin's harmless mode: longest first) through
    // B. Once a replica answers with it, it never answers with version 1
    // again.
    let r = b.put_component(key, "mine", read("nboost_hostile"), json!({}));
    let (status, v) = json_of(r);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 2);
    for s in [a, c] {
        until("version 2 everywhere", || {
            let (_, v) = json_of(s.get(key, "/v1/components/mine"));
            v["version"] == 2
        });
        for _ in 0..20 {
            let (status, v) = rerank(&s.http, &s.base, key, "mine");
            assert_eq!(status, 200, "{v}");
            assert_eq!(top(&v), 1, "the longest passage first (version 2): {v}");
            let (_, v) = json_of(s.get(key, "/v1/components/mine"));
            assert_eq!(v["version"], 2, "{v}");
        }
    }

    // Deleted through C: gone from A and B.
    assert_eq!(c.delete(key, "/v1/components/mine").status(), 204);
    for s in [a, b] {
        until("deleted everywhere", || {
            rerank(&s.http, &s.base, key, "mine").0 == 404
        });
    }
    // Every replica is ready and counts the others.
    for s in &replicas {
        let (status, v) = json_of(s.http.get(s.url("/ready")).send().unwrap());
        assert_eq!((status, v["status"].as_str()), (200, Some("ready")));
    }
    until("three live replicas", || {
        a.log_text().contains("live_replicas=3")
    });
}

/// Clients hammering nginx while the test breaks things; counts answers.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, key: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let (base, key) = (base.to_string(), key.to_string());
                std::thread::spawn(move || {
                    let http = Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let (status, v) = rerank(&http, &base, &key, "mine");
                        if status == 200 && top(&v) == 1 {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.lock().unwrap().push(format!("{status}: {v}"));
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Wait until `n` more requests succeeded.
    fn more(&self, n: usize) {
        let target = self.ok() + n;
        until("the load goes on", || self.ok() >= target);
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

const CLIENTS: usize = 4;

#[test]
fn a_killed_replica_and_a_restarted_database_lose_no_requests() {
    if !services::available() {
        return;
    }
    // Its own PostgreSQL: this test restarts it.
    let pg = Pg::start();
    let s3 = &services::shared().1;
    let shared = Shared::new(&pg, s3);
    let listens: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut replicas: Vec<Server> = ["a", "b", "c"]
        .iter()
        .zip(&listens)
        .map(|(n, l)| shared.replica(n, l))
        .collect();
    let nginx = Nginx::start(&listens);
    let key = &shared.key;
    let r = replicas[0].put_component(key, "mine", read("nboost_reranker_lexical"), json!({}));
    assert_eq!(r.status(), 201);
    for s in &replicas {
        until("every replica serves it", || {
            rerank(&s.http, &s.base, key, "mine").0 == 200
        });
    }

    let load = Load::start(&nginx.url, key, CLIENTS);
    load.more(50);
    // kill -9 B under load; nginx retries what B dropped on A or C.
    replicas[1].kill9();
    load.more(100);
    // B rejoins on its address, with its caches, and serves again.
    replicas[1] = shared.replica("b", &listens[1]);
    let b = &replicas[1];
    until("B serves after rejoining", || {
        rerank(&b.http, &b.base, key, "mine").0 == 200
    });
    load.more(50);
    let b_addr = listens[1].clone();
    until("nginx sends to B again", || {
        nginx
            .access_log()
            .lines()
            .rev()
            .take(200)
            .any(|l| l.contains(&b_addr))
    });

    // PostgreSQL restarts under load: reranks of cached tenants and
    // components keep being served; the replicas reconnect on their own.
    pg.restart();
    load.more(100);
    let (ok, failed) = load.finish();
    eprintln!(
        "load through nginx: {ok} answered, {} failed: {failed:?}",
        failed.len()
    );
    // Only requests in flight on the killed replica may fail (nginx
    // retries those too, so usually none do).
    assert!(failed.len() <= CLIENTS, "{failed:?}");
    for s in &mut replicas {
        assert!(s.child.try_wait().unwrap().is_none(), "a replica exited");
    }
    // Writes work again without restarting any replica.
    let a = &replicas[0];
    until("uploads work after the database restarted", || {
        a.put_component(key, "other", read("nboost_reranker_lexical"), json!({}))
            .status()
            == 201
    });
    until("C serves what A took after the restart", || {
        rerank(&replicas[2].http, &replicas[2].base, key, "other").0 == 200
    });
}

#[test]
fn a_tenants_concurrency_quota_is_divided_over_the_live_replicas() {
    if !services::available() {
        return;
    }
    let (pg, s3) = services::shared();
    let shared = Shared::new(pg, s3);
    const M: usize = 4;
    succeeds(
        shared
            .cli()
            .args([
                "tenants",
                "set-quota",
                "acme",
                "--max-concurrent",
                &M.to_string(),
            ])
            .args(shared.args()),
    );
    let replicas: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|n| shared.replica_with(n, "127.0.0.1:0", &["--deadline-ms", "2000"]))
        .collect();
    let key = &shared.key;
    // A plugin that waits in a host call until its deadline: it holds its
    // slot for 2 s and uses no CPU.
    let r = replicas[0].put_component(
        key,
        "sleeper",
        read("nboost_hostile"),
        json!({"settings": {"attack": "sleep"}}),
    );
    assert_eq!(r.status(), 201);
    for s in &replicas {
        until("every replica counts three", || {
            s.log_text().contains("live_replicas=3")
        });
        until("every replica sees the sleeper", || {
            s.get(key, "/v1/components/sleeper").status() == 200
        });
    }
    // M calls at each replica at once: each admits ceil(M / 3) = 2, so the
    // cluster admits 6 of the tenant's calls, M + 2 (at most M + L - 1).
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let calls: Vec<_> = replicas
            .iter()
            .flat_map(|s| (0..M).map(move |_| s))
            .map(|s| scope.spawn(move || rerank(&s.http, &s.base, key, "sleeper").0))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let admitted = statuses.iter().filter(|s| **s != 429).count();
    let share = M.div_ceil(3);
    eprintln!("max_concurrent {M} over 3 replicas: {admitted} admitted at once ({statuses:?})");
    // 3 x ceil(M / 3) = 6 is the documented M + L - 1 bound, reached.
    assert_eq!(admitted, 3 * share, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [429, 504].contains(s)),
        "{statuses:?}"
    );
}
