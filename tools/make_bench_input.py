"""Write bench/rerank-100x100.json: one real query and 100 real passages of ~100 tokens.

Why: reranking throughput depends on how many tokens each passage has, so the
benchmark input fixes that: 100 passages, each 90-110 all-MiniLM-L6-v2 tokens
([CLS] and [SEP] included), cut from MEDLINE abstracts at a word boundary, with
one real MEDLINE query. The passages are the query's judged-relevant documents
plus randomly drawn others (fixed seed), shuffled, so the ranking also means
something. Output: {"query": str, "passages": [100 str]}; deterministic.

Usage:
    python tools/make_bench_input.py [--data ../shared/data/medline] [--query-id 1]
        [--out bench/rerank-100x100.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from import_model import default_src
from text_pipeline import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SEED = 100
N_PASSAGES = 100
TARGET_TOKENS = 100  # per passage, [CLS] and [SEP] included
MIN_TOKENS, MAX_TOKENS = 90, 110


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def cut_passage(tokenizer, text: str) -> str | None:
    """The longest word-aligned prefix of `text` with at most TARGET_TOKENS tokens,
    or None if that prefix has fewer than MIN_TOKENS."""
    enc = tokenizer.encode(text)
    content = len(enc.ids) - 2  # without [CLS] / [SEP]
    if content + 2 > TARGET_TOKENS:
        # Keep tokens [1, last]; cut only where the next token starts a new word.
        last = TARGET_TOKENS - 2
        while last > 1 and enc.word_ids[last + 1] == enc.word_ids[last]:
            last -= 1
        text = text[:enc.offsets[last][1]]
    n = len(tokenizer.encode(text).ids)
    return text if MIN_TOKENS <= n <= MAX_TOKENS else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "medline",
                        help="collection directory (corpus.jsonl, queries.jsonl, qrels.tsv)")
    parser.add_argument("--query-id", default="1")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "rerank-100x100.json")
    args = parser.parse_args()

    tokenizer = load_tokenizer(default_src() / "tokenizer.json")
    query = next(q["text"] for q in read_jsonl(args.data / "queries.jsonl")
                 if q["_id"] == args.query_id)
    with (args.data / "qrels.tsv").open(encoding="utf-8") as f:
        relevant = {doc for qid, doc, score in (line.split("\t") for line in list(f)[1:])
                    if qid == args.query_id and int(score) > 0}

    passages: dict[str, str] = {}  # doc id -> cut passage, corpus order
    for doc in read_jsonl(args.data / "corpus.jsonl"):
        text = cut_passage(tokenizer, " ".join(p for p in (doc["title"], doc["text"]) if p))
        if text is not None:
            passages[doc["_id"]] = text

    rng = np.random.default_rng(SEED)
    chosen = [d for d in passages if d in relevant][:N_PASSAGES]
    others = [d for d in passages if d not in relevant]
    chosen += [others[i] for i in sorted(rng.choice(len(others), N_PASSAGES - len(chosen),
                                                    replace=False))]
    chosen = [chosen[i] for i in rng.permutation(len(chosen))]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    bench = {"query": query, "passages": [passages[d] for d in chosen]}
    args.out.write_text(json.dumps(bench, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    lengths = [len(tokenizer.encode(passages[d]).ids) for d in chosen]
    print(f"wrote {args.out}: query {args.query_id} {query!r}; {len(chosen)} passages, "
          f"{sum(d in relevant for d in chosen)} judged relevant; tokens min {min(lengths)} "
          f"mean {np.mean(lengths):.1f} max {max(lengths)}")
    print(f"doc ids in order: {' '.join(chosen)}")
    print(f"relevant positions: {[i for i, d in enumerate(chosen) if d in relevant]}")


if __name__ == "__main__":
    main()
