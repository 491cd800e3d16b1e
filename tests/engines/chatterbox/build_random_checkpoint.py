"""A random-weight Chatterbox checkpoint with the real tensor shapes, built locally.

The real weights are a hub download (and RTF ~60 on this CPU), so the engine tests run on
random weights instead: every file `ChatterboxTTS.from_local` reads, with the shapes it
expects, except that T3's Llama has 2 layers instead of 30 (`t3_layers(2)` must be
active while such a checkpoint is loaded). The hidden size stays 1024: the Perceiver
resampler hard-codes it.

Random T3 weights almost never emit the stop token, and an immediate stop (0 speech
tokens) crashes S3Gen. T3 is therefore shaped to stop after about STOP_AFTER tokens:
  - residual dimension 0 carries a constant and dimension 1 a ramp over the speech
    position (set in the speech token and position embeddings; no layer writes either);
  - CANDIDATES speech tokens get a high logit from dimension 0, so sampling picks among
    them (the rest of each row stays random, so the choice still depends on the input);
  - the stop token's logit rises with the ramp and overtakes them near STOP_AFTER.

Run as a script to build into a folder: python build_random_checkpoint.py OUT_DIR
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file

# Bump when the recipe changes: cached checkpoints of another version are rebuilt.
RECIPE_VERSION = 1
T3_LAYERS = 2
STOP_AFTER = 30  # speech tokens per sentence (25 tokens ~ 1 s of audio)
CANDIDATES = 200  # speech tokens sampling chooses from
_CANDIDATE_LOGIT = 8.0
_RAMP_PER_TOKEN = 0.5
_STOP_GAIN = 1.0

_CACHE_ROOT = Path.home() / ".cache" / "trunkline" / "test-models"
_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json")


@contextlib.contextmanager
def t3_layers(n: int = T3_LAYERS) -> Iterator[None]:
    """Make chatterbox build its T3 Llama with `n` layers while the block is active."""
    from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS

    config = LLAMA_CONFIGS["Llama_520M"]
    before = config["num_hidden_layers"]
    config["num_hidden_layers"] = n
    try:
        yield
    finally:
        config["num_hidden_layers"] = before


def cached_checkpoint(cache_root: Path | None = None) -> Path:
    """The checkpoint folder, built on first use (about a minute) and reused afterwards."""
    root = Path(cache_root or os.environ.get("TRUNKLINE_TEST_MODELS", _CACHE_ROOT))
    target = root / f"chatterbox-random-v{RECIPE_VERSION}"
    if all((target / name).is_file() for name in _FILES):
        return target
    root.mkdir(parents=True, exist_ok=True)
    # One builder at a time (parallel test runs); a waiter then finds the finished folder.
    with (root / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all((target / name).is_file() for name in _FILES):
            return target
        # Build beside the target and rename: a crash never leaves a half checkpoint.
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=root))
        try:
            build(tmp)
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build(out_dir: Path, seed: int = 0) -> Path:
    """Write ve / t3_cfg / s3gen safetensors and a tokenizer.json into `out_dir`."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.voice_encoder import VoiceEncoder

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    with torch.no_grad():
        _save(VoiceEncoder().state_dict(), out_dir / "ve.safetensors")
        with t3_layers(T3_LAYERS):
            t3 = T3()
        _shape_t3(t3)
        _save(t3.state_dict(), out_dir / "t3_cfg.safetensors")
        del t3
        _save(S3Gen().state_dict(), out_dir / "s3gen.safetensors")
    (out_dir / "tokenizer.json").write_text(_tokenizer_json())
    (out_dir / "RANDOM_WEIGHTS.json").write_text(
        json.dumps({"recipe": RECIPE_VERSION, "t3_layers": T3_LAYERS, "stop_after": STOP_AFTER})
    )
    return out_dir


def _save(state: dict[str, torch.Tensor], path: Path) -> None:
    # safetensors refuses tensors that share storage (tied or sliced weights): copy each.
    # Float tensors go in as float16 to halve the ~1.3 GB (load_state_dict casts back).
    save_file({k: _half(v).contiguous().clone() for k, v in state.items()}, str(path))


def _half(t: torch.Tensor) -> torch.Tensor:
    return t.detach().half() if t.is_floating_point() else t.detach()


def _shape_t3(t3: torch.nn.Module) -> None:
    hp = t3.hp
    speech_emb = t3.speech_emb.weight
    speech_emb[:, 0] = 1.0
    speech_emb[:, 1] = 0.0
    # At generation step i the new token sits at speech position i + 1.
    pos = t3.speech_pos_emb.emb.weight
    positions = torch.arange(pos.shape[0], dtype=pos.dtype)
    pos[:, 0] = 0.0
    pos[:, 1] = _RAMP_PER_TOKEN * (positions - STOP_AFTER)
    for layer in t3.tfmr.layers:
        layer.self_attn.o_proj.weight[:2, :] = 0.0
        layer.mlp.down_proj.weight[:2, :] = 0.0
    head = t3.speech_head.weight
    head[:, :2] = 0.0
    head[:CANDIDATES, 0] = _CANDIDATE_LOGIT
    stop = hp.stop_speech_token
    head[stop, :] = 0.0
    head[stop, 0] = _CANDIDATE_LOGIT
    head[stop, 1] = _STOP_GAIN


def _tokenizer_json() -> str:
    """A character-level tokenizer in the layout chatterbox's EnTokenizer expects."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE

    # T3 adds start/stop text tokens by id (255 / 0), so the vocabulary puts them there.
    vocab = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2, "[PAD]": 3, "[SEP]": 4, "[CLS]": 5, "[MASK]": 6}
    for ch in (chr(c) for c in range(33, 127)):
        vocab[ch] = len(vocab)
    while len(vocab) < 255:  # fill the gap so every id below [START] means something
        vocab[f"[UNUSED{len(vocab)}]"] = len(vocab)
    vocab["[START]"] = 255
    # No merges and no pre-tokenizer: the whole (space-free) string splits into characters.
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.add_special_tokens(["[START]", "[STOP]", "[UNK]", "[SPACE]"])
    return tokenizer.to_str()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python build_random_checkpoint.py OUT_DIR")
    print(build(Path(sys.argv[1])))
