"""BM25 retrieval over domain knowledge, on a small labelled set of caller questions."""

from __future__ import annotations

import pytest

from agent.prompting.retrieval import BM25Index, KnowledgeEntry, tokenize
from tests.prompting.knowledge import ENTRIES, LABELLED_QUERIES


@pytest.fixture(scope="module")
def index() -> BM25Index:
    return BM25Index(ENTRIES)


@pytest.mark.parametrize("query,expected", LABELLED_QUERIES)
def test_the_entry_that_answers_the_question_ranks_first(index, query, expected):
    hits = index.search(query, k=3)
    assert hits, f"nothing retrieved for {query!r}"
    assert hits[0].entry.id == expected, [(h.entry.id, round(h.score, 2)) for h in hits]


def test_scores_are_descending_and_k_is_respected(index):
    hits = index.search("printer paper roll", k=4)
    assert len(hits) == 4
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_unrelated_or_empty_query_retrieves_nothing(index):
    assert index.search("hello, thanks a lot") == []
    assert index.search("") == []
    assert index.search("!!! ???") == []


def test_empty_knowledge_base():
    assert BM25Index([]).search("printer") == []


def test_rare_words_outweigh_common_ones():
    entries = [
        KnowledgeEntry(1, "d", "fact", "printer printer printer setup"),
        KnowledgeEntry(2, "d", "fact", "printer firmware update"),
        KnowledgeEntry(3, "d", "fact", "printer cleaning"),
    ]
    assert BM25Index(entries).search("printer firmware")[0].entry.id == 2


def test_tokenize_drops_stopwords_and_folds_plurals():
    assert tokenize("How do I fix the Printers?") == ["fix", "printer"]
    assert tokenize("glass") == ["glass"]


def test_bad_k_is_refused(index):
    with pytest.raises(ValueError, match="k must be"):
        index.search("printer", k=0)
