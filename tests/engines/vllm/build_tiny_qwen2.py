"""Builds a random-weight Qwen2 model directory for fast vLLM tests.

Two layers, hidden size 128, float32: about 80 MB, almost all of it the embedding of
the real Qwen2.5 vocabulary. The tokenizer (and its hermes tool-calling chat template)
is the real one, read out of the Qwen2.5-Coder GGUF with transformers' GGUF support,
so prompts, chat templating, prefix caching and guided decoding behave as with the
real model; only the answers are gibberish.

Usage (in the vLLM env): python build_tiny_qwen2.py --gguf QWEN.gguf --out DIR
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

GGUF_ENV_VAR = "TRUNKLINE_QWEN_GGUF"
GGUF_MODEL_NAME = "qwen2.5-coder-0.5b-instruct"


def locate_qwen_gguf() -> Path:
    """The Qwen2.5 GGUF: from $TRUNKLINE_QWEN_GGUF (set by the outer test), else models.resolve."""
    if value := os.environ.get(GGUF_ENV_VAR):
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"{GGUF_ENV_VAR}={value} is not a file")
        return path
    try:
        import models
    except ImportError as exc:
        raise RuntimeError(
            f"set {GGUF_ENV_VAR} to the {GGUF_MODEL_NAME} GGUF, or put the trunkline "
            "checkout on PYTHONPATH so models.resolve can find it"
        ) from exc
    return models.resolve(GGUF_MODEL_NAME)


def build_tiny_qwen2(gguf_path: Path, out_dir: Path, *, seed: int = 0) -> Path:
    """Writes config, random safetensors weights and the GGUF's tokenizer to `out_dir`."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    if not tokenizer.chat_template:
        raise ValueError(f"{gguf_path} carries no chat template")
    tokenizer.save_pretrained(out_dir)

    end_ids = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head size 64: one the CPU attention kernels support
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=end_ids[1],
        eos_token_id=end_ids[0],
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out_dir)
    GenerationConfig(
        bos_token_id=end_ids[1], eos_token_id=end_ids, pad_token_id=end_ids[1]
    ).save_pretrained(out_dir)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, help=f"Qwen2.5 GGUF (default: ${GGUF_ENV_VAR})")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    out = build_tiny_qwen2(args.gguf or locate_qwen_gguf(), args.out)
    print(out)


if __name__ == "__main__":
    main()
