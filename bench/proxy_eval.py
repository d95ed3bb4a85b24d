"""Quality and added latency of `nboost proxy` in front of a real OpenSearch
node, on every collection in ../shared/data (run by bench/proxy.sh).

Quality: for each judged query, a `multi_match` over title and text
  * BM25        : OpenSearch's own top 10 (the `english` analyzer),
  * model alone : the proxy's top 50 reordered by the component's score,
  * fused       : the proxy's default order (model and BM25 fused),
scored with NDCG@10 and MRR@10 (trec_eval's definitions, graded gains).
One proxied search per query gives both reranked orders: every returned
hit carries `_nboost.model_score` next to its fused `_score`.

Latency: the same search sent to the node and through the proxy, one after
the other; the proxy's added time per search (p50, p95), per component.

    proxy_eval.py --node URL --proxy URL [--latency-queries N] [--json OUT]
"""
import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import requests

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def load(collection: Path):
    queries = {}
    for line in (collection / "queries.jsonl").open():
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    qrels = {}
    for i, line in enumerate((collection / "qrels.tsv").open()):
        if i == 0:
            continue
        qid, did, score = line.rstrip("\n").split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    return [(qid, queries[qid], qrels[qid]) for qid in qrels if qid in queries]


def ndcg10(ranking, judged):
    dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr10(ranking, judged):
    for i, d in enumerate(ranking[:10]):
        if judged.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def search(session, base, index, text, size, nboost=None):
    body = {"query": {"multi_match": {"query": text, "fields": ["title", "text"]}}, "size": size,
            "_source": False}
    if nboost is not None:
        body["nboost"] = nboost
    t = time.perf_counter()
    r = session.post(f"{base}/{index}/_search", json=body, timeout=600)
    wall = time.perf_counter() - t
    r.raise_for_status()
    return r.json(), wall


def quality(session, node, proxy, name, topn, component):
    rows = {"bm25": [], "model": [], "fused": []}
    for qid, text, judged in load(DATA / name):
        direct, _ = search(session, node, name, text, 10)
        bm25 = [h["_id"] for h in direct["hits"]["hits"]]
        via, _ = search(session, proxy, name, text, topn, {"component": component, "topn": topn})
        assert via["nboost"]["reranked"], via["nboost"]
        hits = via["hits"]["hits"]
        fused = [h["_id"] for h in hits]
        model = [h["_id"] for h in sorted(hits, key=lambda h: -h["_nboost"].get("model_score", -1e9))]
        for key, ranking in (("bm25", bm25), ("model", model), ("fused", fused)):
            rows[key].append((ndcg10(ranking, judged), mrr10(ranking, judged)))
        print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {k: {"ndcg@10": statistics.fmean(r[0] for r in v), "mrr@10": statistics.fmean(r[1] for r in v),
                "queries": len(v)} for k, v in rows.items()}


def latency(session, node, proxy, name, component, n, topn):
    added, rerank = [], []
    for _, text, _ in load(DATA / name)[:n]:
        _, direct = search(session, node, name, text, 10)
        via, wall = search(session, proxy, name, text, 10, {"component": component, "topn": topn})
        added.append((wall - direct) * 1e3)
        rerank.append(via["nboost"]["rerank_ms"])
    q = statistics.quantiles(added, n=20)
    return {"component": component, "searches": n, "topn": topn,
            "added_ms_p50": statistics.median(added), "added_ms_p95": q[18],
            "rerank_ms_p50": statistics.median(rerank)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--component", default="minilm")
    ap.add_argument("--topn", type=int, default=50)
    ap.add_argument("--latency-queries", type=int, default=50)
    ap.add_argument("--collections", default="cacm,cisi,cranfield,medline")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    s = requests.Session()
    report = {"quality": {}, "latency": []}
    if not args.skip_quality:
        for name in args.collections.split(","):
            report["quality"][name] = quality(s, args.node, args.proxy, name, args.topn, args.component)
            r = report["quality"][name]
            print(f"{name:10s} NDCG@10 bm25 {r['bm25']['ndcg@10']:.4f} model {r['model']['ndcg@10']:.4f} "
                  f"fused {r['fused']['ndcg@10']:.4f} | MRR@10 bm25 {r['bm25']['mrr@10']:.4f} "
                  f"model {r['model']['mrr@10']:.4f} fused {r['fused']['mrr@10']:.4f}", flush=True)
    for component in ["lexical", args.component]:
        # Warm up (first call loads and compiles the component).
        search(s, args.proxy, "cranfield", "wing", 10, {"component": component})
        lat = latency(s, args.node, args.proxy, "cranfield", component, args.latency_queries, args.topn)
        report["latency"].append(lat)
        print(f"added latency, {component}, topn {args.topn}: p50 {lat['added_ms_p50']:.1f} ms, "
              f"p95 {lat['added_ms_p95']:.1f} ms (rerank p50 {lat['rerank_ms_p50']:.1f} ms)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
