"""The real rerank clients, unchanged but for their base URL, against a
running `nboost serve` (tests/clients.rs starts it and runs this file with
NBOOST_URL and NBOOST_KEY set). Each must get correct rankings and clean
errors. Models are named as the clients name them by default; the server's
manifest maps those names to components (aliases)."""

import asyncio
import os

import pytest

URL = os.environ["NBOOST_URL"]
KEY = os.environ["NBOOST_KEY"]
QUERY = "what causes lift on an aircraft wing"
DOCS = [
    "The migration of birds follows the seasons.",
    "Lift on an aircraft wing comes from the pressure difference between its surfaces.",
    "Bread rises because yeast produces carbon dioxide.",
]
BEST = 1


def test_cohere_v2_sync_and_async():
    import cohere

    r = cohere.ClientV2(base_url=URL, api_key=KEY).rerank(
        model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=2, max_tokens_per_doc=64
    )
    assert [x.index for x in r.results][0] == BEST
    assert len(r.results) == 2

    async def call():
        client = cohere.AsyncClientV2(base_url=URL, api_key=KEY)
        return await client.rerank(model="minilm", query=QUERY, documents=DOCS)

    a = asyncio.run(call())
    assert a.results[0].index == BEST
    assert len(a.results) == 3
    assert a.results[0].relevance_score == pytest.approx(
        next(x.relevance_score for x in r.results if x.index == BEST), abs=1e-5
    )


def test_cohere_v1_sync_and_async_with_rank_fields_and_chunks():
    import cohere

    client = cohere.Client(base_url=URL, api_key=KEY)
    r = client.rerank(
        model="minilm", query=QUERY, documents=DOCS, top_n=1, return_documents=True
    )
    assert r.results[0].index == BEST
    assert r.results[0].document.text == DOCS[BEST]
    objects = [{"title": "Birds", "text": DOCS[0]}, {"title": "Wings", "body": DOCS[1]}]
    r = client.rerank(
        model="minilm", query=QUERY, documents=objects, rank_fields=["title", "body"]
    )
    assert r.results[0].index == 1
    # 385 pre-tokens of filler (past MiniLM's 256-token window), then the
    # answer: the third 192-pre-token chunk holds it.
    long_doc = "The weather was mild that day. " * 55 + DOCS[BEST]

    async def call():
        return await cohere.AsyncClient(base_url=URL, api_key=KEY).rerank(
            model="minilm", query=QUERY, documents=[DOCS[0], long_doc], max_chunks_per_doc=10
        )

    a = asyncio.run(call())
    assert a.results[0].index == 1, a


def test_cohere_errors_are_typed():
    import cohere

    with pytest.raises(cohere.errors.UnauthorizedError) as e:
        cohere.ClientV2(base_url=URL, api_key="nbk_wrong").rerank(
            model="minilm", query="q", documents=["a"]
        )
    assert e.value.status_code == 401
    with pytest.raises(cohere.errors.NotFoundError) as e:
        cohere.ClientV2(base_url=URL, api_key=KEY).rerank(
            model="rerank-v9", query="q", documents=["a"]
        )
    assert "unknown component `rerank-v9`" in str(e.value.body)
    with pytest.raises(cohere.errors.UnprocessableEntityError):
        cohere.ClientV2(base_url=URL, api_key=KEY).rerank(
            model="minilm", query="q", documents=["a"], max_tokens_per_doc=0
        )


def test_langchain_cohere_rerank_in_a_compression_retriever():
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    class Fixed(BaseRetriever):
        def _get_relevant_documents(self, query, *, run_manager=None):
            return [Document(page_content=d, metadata={"i": i}) for i, d in enumerate(DOCS)]

    retriever = ContextualCompressionRetriever(
        base_compressor=CohereRerank(
            model="rerank-v3.5", cohere_api_key=KEY, base_url=URL, top_n=2
        ),
        base_retriever=Fixed(),
    )
    docs = retriever.invoke(QUERY)
    assert [d.metadata["i"] for d in docs][0] == BEST
    assert len(docs) == 2
    assert docs[0].metadata["relevance_score"] > docs[1].metadata["relevance_score"]


def test_langchain_jina_rerank_and_its_errors(monkeypatch):
    from langchain_community.document_compressors import jina_rerank
    from langchain_core.documents import Document

    monkeypatch.setattr(jina_rerank, "JINA_API_URL", URL + "/v1/rerank")
    compressor = jina_rerank.JinaRerank(jina_api_key=KEY, top_n=2)
    docs = compressor.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    assert docs[0].page_content == DOCS[BEST]
    assert len(docs) == 2
    # Jina's clients read the message from `detail`.
    bad = jina_rerank.JinaRerank(jina_api_key=KEY, model="no-such-model")
    with pytest.raises(RuntimeError, match="unknown component `no-such-model`"):
        bad.rerank(DOCS, QUERY)


def test_llama_index_cohere_rerank():
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i)), score=0.0) for i, d in enumerate(DOCS)]
    out = CohereRerank(api_key=KEY, base_url=URL, top_n=2).postprocess_nodes(
        nodes, QueryBundle(QUERY)
    )
    assert out[0].node.node_id == str(BEST)
    assert len(out) == 2


def test_huggingface_hub_inference_client():
    from huggingface_hub import InferenceClient

    client = InferenceClient(model=URL, token=KEY, provider="hf-inference")
    info = client.get_endpoint_info()
    assert info["model_id"] == "minilm"
    assert info["max_input_length"] == 256
    assert info["max_client_batch_size"] >= 1
    assert client.health_check()
