"""Chatterbox TTS (Resemble AI, MIT) with cloned voices: the GPU TTS engine.

Runs in its own environment (serving/envs/chatterbox: chatterbox-tts pins another torch
than the rest of the stack). Weights come only from a local folder (`from_local`); the
hub is never contacted.

A voice clone is Chatterbox's "conditionals" (speaker embedding, prompt speech tokens,
reference mel) computed once from >= 5 s of reference audio, stored by models.voices and
loaded by every replica at start. Upstream keeps the current voice in `model.conds`,
shared mutable state; here each request carries its own conditionals, and one lock
serialises all model calls (T3 rebuilds its patched backend on every call, so the model
is not re-entrant). Audio streams sentence by sentence, 24 kHz mono int16; every chunk
carries Chatterbox's Perth watermark.
"""

from __future__ import annotations

import asyncio
import copy
import io
import logging
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import perth
import torch
import torch.nn.functional as F
from chatterbox.models.s3tokenizer import SPEECH_VOCAB_SIZE, drop_invalid_tokens
from chatterbox.tts import ChatterboxTTS as _UpstreamTTS
from chatterbox.tts import Conditionals, punc_norm

from models.paths import trunkline_home
from models.voices import (
    InvalidVoiceId,
    VoiceError,
    VoiceExists,
    VoiceInfo,
    VoiceNotFound,
    VoiceStore,
    check_voice_id,
    sha256_bytes,
)
from serving.audio import check_rate, decode_audio, encode_wav, resample, to_float32
from serving.base import AudioChunk, BadInput, EngineError, UnknownVoice
from serving.text import DEFAULT_MAX_CHARS, sentences_to_speak

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000  # S3Gen's output rate
MODEL_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json")
# The voice shipped in the checkpoint folder (conds.pt), if any.
BUILTIN_VOICE = "default"
# Chatterbox needs more than 5 s of reference; it uses at most the first 10 s.
MIN_REFERENCE_S = 5.0
MAX_REFERENCE_S = 60.0
_SILENCE_PEAK = 1e-3  # float amplitude below which a reference clip carries no voice


def default_voices_dir() -> Path:
    return trunkline_home() / "voices"


class ChatterboxTTS:
    """TTSEngine for one Chatterbox checkpoint folder and a folder of cloned voices.

    Voice names: the ids in `voices_dir` (see models.voices), plus "default" when the
    checkpoint ships a conds.pt. `seed` makes output reproducible: each sentence is
    sampled from seed + its index, whatever else the replica is doing.
    """

    name = "chatterbox"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        device: str = "cpu",
        voices_dir: str | os.PathLike[str] | None = None,
        *,
        default_voice: str | None = None,
        seed: int | None = None,
        exaggeration: float = 0.5,
        cfg_weight: float = 0.5,
        temperature: float = 0.8,
        repetition_penalty: float = 1.2,
        min_p: float = 0.05,
        top_p: float = 1.0,
        max_speech_tokens: int = 1000,
        cfm_steps: int | None = None,
        threads: int | None = None,
        max_sentence_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        model_dir = Path(model_path)
        missing = [f for f in MODEL_FILES if not (model_dir / f).is_file()]
        if missing:
            raise EngineError(
                f"Chatterbox checkpoint {model_dir} is incomplete: missing {', '.join(missing)}"
            )
        if perth.PerthImplicitWatermarker is None:
            # resemble-perth swallows its ImportError; the model would crash on first use.
            raise EngineError(
                "resemble-perth's watermarker failed to import (it needs setuptools<81 for "
                "pkg_resources); rebuild the env with serving/envs/chatterbox/build.sh"
            )
        if threads:
            # Process-wide: one engine per replica process, so this is the replica's setting.
            torch.set_num_threads(threads)
        try:
            self._model = _UpstreamTTS.from_local(model_dir, device)
        except Exception as e:  # safetensors/torch raise many types for a bad checkpoint
            raise EngineError(f"Chatterbox checkpoint {model_dir} could not be loaded: {e}") from e
        self.device = device
        self._builtin = self._model.conds
        self._model.conds = None  # never used: every request passes its own
        self._store = VoiceStore(voices_dir if voices_dir is not None else default_voices_dir())
        self._default_voice = default_voice
        self._seed = seed
        self._exaggeration = float(exaggeration)
        self._gen_options = dict(
            temperature=temperature,
            cfg_weight=cfg_weight,
            repetition_penalty=repetition_penalty,
            min_p=min_p,
            top_p=top_p,
            max_new_tokens=max_speech_tokens,
        )
        self._cfm_steps = cfm_steps
        self._max_sentence_chars = max_sentence_chars
        self._lock = threading.Lock()  # guards every use of the model
        self._registry_lock = threading.Lock()  # guards replacing the two dicts below
        self._voices: dict[str, Conditionals] = {}
        self._voice_errors: dict[str, str] = {}
        self.load_voices()

    # ------------------------------------------------------------ voices

    @property
    def voices_dir(self) -> Path:
        return self._store.root

    def voices(self) -> list[str]:
        return sorted(self._voices)

    def voice_info(self) -> list[VoiceInfo]:
        return self._store.list()

    def load_voices(self) -> list[str]:
        """(Re)load every stored voice; call at replica start and after another replica
        added or removed one. A broken voice is reported, not fatal: the others still
        speak, and requests for it get UnknownVoice saying what is wrong."""
        voices: dict[str, Conditionals] = {}
        errors: dict[str, str] = {}
        if self._builtin is not None:
            voices[BUILTIN_VOICE] = self._builtin
        for voice_id in self._store.ids():
            try:
                voices[voice_id] = self._load_conds(voice_id)
            except (VoiceError, OSError, RuntimeError, KeyError, TypeError) as e:
                errors[voice_id] = str(e)
                log.error("voice %r not loaded: %s", voice_id, e)
        # Swap whole dicts: a request running meanwhile sees the old set or the new one.
        with self._registry_lock:
            self._voices, self._voice_errors = voices, errors
        return sorted(voices)

    async def add_voice(
        self,
        voice_id: str,
        audio: bytes | np.ndarray,
        sample_rate: int | None = None,
        *,
        name: str | None = None,
        replace: bool = False,
    ) -> VoiceInfo:
        """Clone a voice from reference audio (an audio file's bytes, or mono PCM with its
        rate), store its conditionals and make it available here at once."""
        try:
            check_voice_id(voice_id)
        except InvalidVoiceId as e:
            raise BadInput(str(e)) from None
        if voice_id == BUILTIN_VOICE and self._builtin is not None:
            raise BadInput(f"voice id {voice_id!r} is the checkpoint's built-in voice")
        if not replace and self._store.exists(voice_id):
            raise BadInput(f"voice {voice_id!r} already exists (pass replace=True to redo it)")
        ref, rate, source_sha = _reference_audio(audio, sample_rate)
        duration = len(ref) / rate
        wav = encode_wav(ref, rate)

        def clone_and_store() -> VoiceInfo:
            conds = self._compute_conds(wav)
            try:
                info = self._store.save(
                    voice_id,
                    conds.save,
                    source_sha256=source_sha,
                    duration_s=duration,
                    name=name,
                    replace=replace,
                )
            except VoiceExists as e:
                raise BadInput(str(e)) from None
            # Serve the stored file, not the in-memory object: this replica then speaks
            # exactly as every other replica that loads it will.
            self._register(voice_id, self._load_conds(voice_id))
            return info

        return await asyncio.to_thread(clone_and_store)

    def remove_voice(self, voice_id: str) -> None:
        if voice_id == BUILTIN_VOICE and self._builtin is not None:
            raise BadInput(f"voice {voice_id!r} is the checkpoint's built-in voice")
        try:
            self._store.delete(voice_id)
        except InvalidVoiceId as e:
            raise UnknownVoice(str(e)) from None
        except VoiceNotFound:
            if voice_id not in self._voices:
                raise UnknownVoice(f"unknown voice {voice_id!r}") from None
        self._register(voice_id, None)

    def _register(self, voice_id: str, conds: Conditionals | None) -> None:
        with self._registry_lock:
            voices = {k: v for k, v in self._voices.items() if k != voice_id}
            if conds is not None:
                voices[voice_id] = conds
            self._voices = voices
            self._voice_errors = {k: v for k, v in self._voice_errors.items() if k != voice_id}

    def _load_conds(self, voice_id: str) -> Conditionals:
        _, path = self._store.load(voice_id)
        return Conditionals.load(path, map_location="cpu").to(self.device)

    def _compute_conds(self, wav: bytes) -> Conditionals:
        # Upstream's prepare_conditionals (its resampling and 6 s / 10 s windows) writes
        # model.conds; under the lock, and with the old value put back, nobody sees it.
        with self._lock:
            saved = self._model.conds
            try:
                self._model.prepare_conditionals(io.BytesIO(wav), exaggeration=self._exaggeration)
                return self._model.conds
            except Exception as e:  # torch/librosa errors: report, don't take the replica down
                raise EngineError(f"computing the voice clone failed: {e}") from e
            finally:
                self._model.conds = saved

    def _conds_for(self, voice: str | None) -> Conditionals:
        voice = voice or self._default_voice
        if voice is None:
            if len(self._voices) == 1:
                return next(iter(self._voices.values()))
            raise UnknownVoice(f"no voice given and no default voice; voices: {self.voices()}")
        conds = self._voices.get(voice)
        if conds is None:
            if voice in self._voice_errors:
                raise UnknownVoice(f"voice {voice!r} failed to load: {self._voice_errors[voice]}")
            raise UnknownVoice(f"unknown voice {voice!r}; this engine has {self.voices()}")
        return conds

    # ------------------------------------------------------------ synthesis

    def synthesize(self, text: str, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        # Validate before the generator starts, so bad requests fail at the call site.
        sentences = sentences_to_speak(text, self._max_sentence_chars)
        conds = self._conds_for(voice)
        return self._stream(sentences, conds)

    async def _stream(self, sentences: list[str], conds: Conditionals) -> AsyncIterator[AudioChunk]:
        for index, sentence in enumerate(sentences):
            # A cancelled stream (barge-in) stops after the sentence in flight.
            pcm = await asyncio.to_thread(self._speak_sentence, sentence, conds, index)
            if pcm.size:
                yield AudioChunk(pcm=pcm, sample_rate=SAMPLE_RATE)

    def _speak_sentence(self, sentence: str, conds: Conditionals, index: int) -> np.ndarray:
        model = self._model
        with self._lock, torch.inference_mode():
            if self._seed is not None:
                torch.manual_seed(self._seed + index)
            # T3 caches the prompt embedding on the T3Cond it is given, and S3Gen casts the
            # ref dict in place: hand both copies so the stored voice is never touched.
            t3_cond = copy.copy(conds.t3)
            t3_cond.emotion_adv = torch.full((1, 1, 1), self._exaggeration, device=self.device)
            try:
                tokens = self._speech_tokens(sentence, t3_cond)
                if tokens.numel() == 0:
                    log.warning("Chatterbox produced no speech for %r", sentence[:60])
                    return np.zeros(0, np.int16)
                wav, _ = model.s3gen.inference(
                    speech_tokens=tokens, ref_dict=dict(conds.gen), n_cfm_timesteps=self._cfm_steps
                )
                wav = wav.squeeze(0).detach().cpu().numpy()
                wav = model.watermarker.apply_watermark(wav, sample_rate=SAMPLE_RATE)
            except Exception as e:  # torch errors: report, don't take the replica down
                raise EngineError(f"Chatterbox failed on {sentence[:60]!r}: {e}") from e
        return (np.clip(np.asarray(wav, np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)

    def _speech_tokens(self, sentence: str, t3_cond: object) -> torch.Tensor:
        model = self._model
        text_tokens = model.tokenizer.text_to_tokens(punc_norm(sentence)).to(self.device)
        # T3's sampler always runs a pair (text-aware, text-blind) for classifier-free
        # guidance, also when cfg_weight is 0 (then only the first one counts).
        text_tokens = torch.cat([text_tokens, text_tokens], dim=0)
        hp = model.t3.hp
        text_tokens = F.pad(text_tokens, (1, 0), value=hp.start_text_token)
        text_tokens = F.pad(text_tokens, (0, 1), value=hp.stop_text_token)
        speech = model.t3.inference(t3_cond=t3_cond, text_tokens=text_tokens, **self._gen_options)
        speech = drop_invalid_tokens(speech[0])
        return speech[speech < SPEECH_VOCAB_SIZE].to(self.device)


def _reference_audio(
    audio: bytes | np.ndarray, sample_rate: int | None
) -> tuple[np.ndarray, int, str]:
    """Validated mono float32 reference audio, its rate, and the sha256 of the source."""
    if isinstance(audio, bytes | bytearray | memoryview):
        data = bytes(audio)
        pcm, rate = decode_audio(data, max_s=MAX_REFERENCE_S)
        source_sha = sha256_bytes(data)
    elif isinstance(audio, np.ndarray):
        if sample_rate is None:
            raise BadInput("reference PCM needs its sample rate")
        check_rate(sample_rate)
        if audio.ndim != 1:
            raise BadInput(f"reference PCM must be mono (1-D), got shape {audio.shape}")
        pcm, rate = audio, int(sample_rate)
        source_sha = sha256_bytes(np.ascontiguousarray(pcm).tobytes() + str(rate).encode())
    else:
        raise BadInput(f"reference audio must be file bytes or a PCM array, not {type(audio)}")
    ref = to_float32(pcm)
    if not np.all(np.isfinite(ref)):
        raise BadInput("reference audio contains NaN or infinite samples")
    duration = len(ref) / rate
    if duration < MIN_REFERENCE_S:
        raise BadInput(
            f"reference audio is {duration:.1f} s; a voice clone needs at least "
            f"{MIN_REFERENCE_S:.0f} s of speech"
        )
    if duration > MAX_REFERENCE_S:
        raise BadInput(
            f"reference audio is {duration:.0f} s; give at most {MAX_REFERENCE_S:.0f} s "
            "(only the first 10 s are used)"
        )
    if float(np.max(np.abs(ref))) < _SILENCE_PEAK:
        raise BadInput("reference audio is silent")
    # Chatterbox resamples to 24 kHz itself; very high rates only cost memory.
    if rate > 48_000:
        ref, rate = resample(ref, rate, 48_000), 48_000
    return ref, rate, source_sha
