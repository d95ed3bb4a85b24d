"""The search clients people already use, pointed at `nboost proxy` instead
of the node: opensearch-py 3.2 and elasticsearch-py 7.13 (the last
Elasticsearch client that talks to OpenSearch). Run by tests/proxy_page.rs
with NBOOST_PROXY_URL (the proxy) and OPENSEARCH_URL (the node behind it).
"""
import os

import elasticsearch
import opensearchpy
import pytest
from opensearchpy import helpers

PROXY = os.environ["NBOOST_PROXY_URL"]
NODE = os.environ["OPENSEARCH_URL"]
QUERY = {"match": {"text": "aeroelastic models of heated high speed aircraft"}}


@pytest.fixture(params=["opensearch-py", "elasticsearch-7.13"])
def client(request):
    if request.param == "opensearch-py":
        return opensearchpy.OpenSearch(PROXY, timeout=120)
    return elasticsearch.Elasticsearch(PROXY, timeout=120)


def test_search_is_reranked_and_keeps_the_response_shape(client):
    direct = opensearchpy.OpenSearch(NODE).search(index="cranfield", body={"query": QUERY, "size": 20})
    r = client.search(index="cranfield", body={"query": QUERY, "size": 5})
    assert r["nboost"]["reranked"] is True
    hits = r["hits"]["hits"]
    assert len(hits) == 5
    top = [h["_id"] for h in direct["hits"]["hits"]]
    assert all(h["_id"] in top for h in hits)
    assert r["hits"]["total"] == direct["hits"]["total"]
    assert [h["_score"] for h in hits] == sorted((h["_score"] for h in hits), reverse=True)
    assert all("upstream_score" in h["_nboost"] for h in hits)


def test_keyword_arguments_paging_and_source_filtering(client):
    full = client.search(index="cranfield", body={"query": QUERY}, size=10)
    page = client.search(index="cranfield", body={"query": QUERY}, size=5, from_=5, _source=False)
    assert [h["_id"] for h in page["hits"]["hits"]] == [h["_id"] for h in full["hits"]["hits"]][5:]
    assert all("_source" not in h for h in page["hits"]["hits"])
    titles = client.search(index="cranfield", body={"query": QUERY, "_source": ["title"]}, size=3)
    assert all(set(h["_source"]) == {"title"} for h in titles["hits"]["hits"])


def test_uri_search_count_and_get(client):
    r = client.search(index="cranfield", q="text:aircraft", size=3)
    assert r["nboost"]["reranked"] is True
    assert client.count(index="cranfield")["count"] == 1400
    assert client.get(index="cranfield", id="1")["_source"]["title"].startswith("experimental")


def test_msearch(client):
    body = [{"index": "cranfield"}, {"query": QUERY, "size": 3},
            {"index": "cranfield"}, {"query": QUERY, "size": 0}]
    r = client.msearch(body=body)
    assert r["responses"][0]["nboost"]["reranked"] is True
    assert len(r["responses"][0]["hits"]["hits"]) == 3
    assert r["responses"][1]["nboost"]["skipped"] == "size_zero"


def test_scan_scrolls_through_the_proxy():
    c = opensearchpy.OpenSearch(PROXY, timeout=120)
    seen = {d["_id"] for d in helpers.scan(c, index="cranfield", query={"query": QUERY}, size=200)}
    direct = opensearchpy.OpenSearch(NODE).count(index="cranfield", body={"query": QUERY})["count"]
    assert len(seen) == direct


def test_bad_options_raise_the_clients_request_error(client):
    error = opensearchpy.RequestError if isinstance(client, opensearchpy.OpenSearch) else elasticsearch.RequestError
    with pytest.raises(error) as e:
        client.search(index="cranfield", body={"query": QUERY, "nboost": {"upstream": "http://127.0.0.1:1"}})
    assert e.value.status_code == 400
    assert e.value.error == "nboost_invalid_request"
