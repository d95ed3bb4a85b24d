"""Replicas over shared state, measured: propagation of an upload to the
other replicas (median, max over N uploads), rerank throughput of 1 vs 3
replicas behind nginx for the lexical component with C concurrent clients,
and a kill -9 of one replica under load (answered / failed counts).

Started by bench/replicas.sh, which starts PostgreSQL, s3s-fs and nginx
through scripts/services.sh. Standard library only."""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import threading
import time
import urllib.parse

DOCS = [
    "wings of birds",
    "the boundary layer of a flat plate in supersonic flow",
    "a plate",
]


def request(base, method, path, key, body=None, ctype="application/json", timeout=30):
    u = urllib.parse.urlparse(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    headers = {"Authorization": f"Bearer {key}"}
    if body is not None:
        headers["Content-Type"] = ctype
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def multipart(wasm, config):
    b = "nboostbench"
    parts = [
        f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="c.wasm"\r\n'
        f"Content-Type: application/wasm\r\n\r\n".encode() + wasm + b"\r\n",
        f'--{b}\r\nContent-Disposition: form-data; name="config"\r\n\r\n{json.dumps(config)}\r\n'.encode(),
        f"--{b}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={b}"


def rerank_body(model):
    return json.dumps({"model": model, "query": "boundary layer flat plate", "documents": DOCS})


def propagation(replicas, key, wasm, n):
    """Upload version v through replica i % 3; time until every other
    replica reports version v."""
    delays = []
    for v in range(1, n + 1):
        src = replicas[(v - 1) % len(replicas)]
        # Same bytes, other settings: a new version each time.
        body, ctype = multipart(wasm, {"description": f"v{v}", "settings": {"k1": 1.0 + v / 100}})
        status, data = request(src, "PUT", "/v1/components/prop", key, body, ctype)
        assert status in (200, 201), (status, data)
        t0 = time.perf_counter()
        for other in replicas:
            if other == src:
                continue
            while True:
                status, data = request(other, "GET", "/v1/components/prop", key)
                if status == 200 and json.loads(data)["version"] == v:
                    break
                if time.perf_counter() - t0 > 10:
                    raise SystemExit(f"version {v} never reached {other}")
        delays.append((time.perf_counter() - t0) * 1000)
    return delays


def load(base, key, clients, seconds, model="mine"):
    body = rerank_body(model)
    ok = [0] * clients
    failed = [0] * clients
    stop = time.perf_counter() + seconds

    def run(i):
        u = urllib.parse.urlparse(base)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        while time.perf_counter() < stop:
            try:
                c.request("POST", "/v1/rerank", body=body,
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    ok[i] += 1
                else:
                    failed[i] += 1
            except Exception:
                failed[i] += 1
                c.close()
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(ok), sum(failed), time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--replicas", nargs=3, required=True)
    p.add_argument("--nginx1", required=True, help="nginx in front of replica A only")
    p.add_argument("--nginx3", required=True, help="nginx in front of all three")
    p.add_argument("--key", required=True)
    p.add_argument("--wasm", required=True)
    p.add_argument("--uploads", type=int, default=50)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--kill-pid", type=int, required=True, help="replica B's pid")
    p.add_argument("--json")
    a = p.parse_args()
    wasm = open(a.wasm, "rb").read()
    body, ctype = multipart(wasm, {})
    status, data = request(a.replicas[0], "PUT", "/v1/components/mine", a.key, body, ctype)
    assert status in (200, 201), (status, data)
    for r in a.replicas:
        while request(r, "POST", "/v1/rerank", a.key, rerank_body("mine"))[0] != 200:
            time.sleep(0.01)

    delays = propagation(a.replicas, a.key, wasm, a.uploads)
    one = load(a.nginx1, a.key, a.clients, a.seconds)
    three = load(a.nginx3, a.key, a.clients, a.seconds)

    # kill -9 replica B a third of the way into a load run.
    killer = threading.Timer(a.seconds / 3, lambda: os.kill(a.kill_pid, 9))
    killer.start()
    killed = load(a.nginx3, a.key, a.clients, a.seconds)

    out = {
        "propagation_ms": {"median": statistics.median(delays), "max": max(delays), "n": len(delays)},
        "one_replica": {"answered": one[0], "failed": one[1], "per_s": one[0] / one[2]},
        "three_replicas": {"answered": three[0], "failed": three[1], "per_s": three[0] / three[2]},
        "kill_9": {"answered": killed[0], "failed": killed[1]},
        "clients": a.clients,
        "cores": os.cpu_count(),
    }
    print(f"propagation of an upload to the other two replicas over {len(delays)} uploads: "
          f"median {out['propagation_ms']['median']:.1f} ms, max {out['propagation_ms']['max']:.1f} ms")
    print(f"lexical through nginx, {a.clients} clients, {a.seconds:.0f} s each, {os.cpu_count()} cores in all:")
    print(f"  1 replica : {out['one_replica']['per_s']:8.1f} req/s ({one[1]} failed)")
    print(f"  3 replicas: {out['three_replicas']['per_s']:8.1f} req/s ({three[1]} failed)")
    print(f"kill -9 of one of three under load: {killed[0]} answered, {killed[1]} failed")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
