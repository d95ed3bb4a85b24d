"""Index a BEIR collection into OpenSearch/Elasticsearch with the `english`
analyzer (title and text), as the proxy tests and bench/proxy_eval.py need.

    index.py URL COLLECTION_DIR INDEX_NAME

Idempotent: an index that already holds every document is left alone.
"""
import json
import sys
from pathlib import Path

from opensearchpy import OpenSearch, helpers


def main() -> None:
    url, collection, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    client = OpenSearch(url, timeout=120)
    docs = [json.loads(line) for line in (collection / "corpus.jsonl").open()]
    if client.indices.exists(index=name):
        if client.count(index=name)["count"] == len(docs):
            print(f"{name}: {len(docs)} documents already indexed")
            return
        client.indices.delete(index=name)
    text = {"type": "text", "analyzer": "english"}
    client.indices.create(
        index=name,
        body={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {"title": text, "text": text}},
        },
    )
    helpers.bulk(
        client,
        (
            {"_index": name, "_id": d["_id"], "_source": {"title": d.get("title", ""), "text": d["text"]}}
            for d in docs
        ),
        chunk_size=500,
    )
    client.indices.refresh(index=name)
    print(f"{name}: {client.count(index=name)['count']} documents indexed")


if __name__ == "__main__":
    main()
