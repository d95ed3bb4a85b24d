"""nboost-reranker-lexical-py: BM25 reranking written in Python, built into a
WebAssembly component with componentize-py.

World `reranker-plugin` (no model). The logic lives in `bm25.py`; this file
only adapts it to the generated bindings of wit/reranker.wit. Built with
`--stub-wasi`, so the component imports nothing at all: CPython's own WASI
imports (including wasi:sockets, which the sandbox refuses) are replaced by
traps that are never reached, because the app reads no file, clock or
socket after build-time initialisation.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.reranker import Error_InvalidConfig, Error_Internal, ModelInfo

import bm25

_config = None


class Reranker(exports.Reranker):
    def configure(self, settings):
        global _config
        _config = None
        try:
            config = bm25.parse_settings(settings)
        except ValueError as e:
            raise Err(Error_InvalidConfig(str(e)))
        _config = config
        return ModelInfo(
            name="bm25",
            version="0.1.0-py",
            description="BM25 over the candidate passages, in Python (componentize-py)",
            preferred_batch_size=0,
            max_tokens=0,
        )

    def score(self, query, passages):
        if _config is None:
            raise Err(Error_InvalidConfig("`configure` has not succeeded"))
        try:
            return bm25.rank(query, passages, **_config)
        except Exception as e:  # a bug here must be an error, not a trap
            raise Err(Error_Internal(f"{type(e).__name__}: {e}"))
