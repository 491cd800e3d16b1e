"""End of turn on real speech: Smart Turn scores and the TurnDetector's events.

Caller audio is espeak-ng speech; at 8 kHz it goes through sox's mu-law round trip,
as from a phone, and is fed in 20 ms frames like the telephony delivers it.
"""

from __future__ import annotations

import asyncio
import platform

import numpy as np
import pytest
from faster_whisper.feature_extractor import FeatureExtractor

import models
from agent.audio.mel import log_mel
from agent.audio.smart_turn import SmartTurn, features, int8_ops_saturate
from agent.audio.turn import (
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnDetector,
    TurnEnded,
    TurnOptions,
    VoiceStarted,
    VoiceStopped,
)
from agent.audio.vad import SileroVAD
from serving.base import BadInput, EngineError
from tests.speech import phone_roundtrip, speak

COMPLETE = "My printer stopped working yesterday."
QUESTION = "Can you help me reset my receipt printer?"
FRAGMENT = "I need help with my"


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    return SmartTurn(models.resolve("smart-turn-v3.2"))


@pytest.fixture(scope="module")
def vad_model():
    return models.resolve("silero-vad")


def voice(text: str, rate: int = 8000) -> np.ndarray:
    """Speech trimmed to the voice itself (phone line at 8 kHz, clean at 16 kHz)."""
    pcm, _ = speak(text, rate)
    if rate == 8000:
        pcm, _ = phone_roundtrip(pcm, rate)
    voiced = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 300)
    return pcm[voiced[0] : voiced[-1] + 1]


def silence(seconds: float, rate: int = 8000) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


async def feed_all(detector: TurnDetector, audio: np.ndarray) -> list:
    step = detector.sample_rate // 50  # 20 ms frames
    events = []
    for i in range(0, audio.size, step):
        events += await detector.feed(audio[i : i + step])
    return events


def of_type(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


# ------------------------------------------------------------------ Smart Turn


def test_mel_matches_faster_whisper():
    audio = voice(QUESTION, 16000).astype(np.float32) / 32768.0
    ours = log_mel(audio)
    reference = FeatureExtractor(feature_size=80, chunk_length=8)(audio, padding=0)
    assert ours.shape == reference.shape == (80, audio.size // 160)
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_features_are_the_last_8s_zero_padded_at_the_start():
    short = voice(QUESTION, 16000).astype(np.float32) / 32768.0
    assert features(short).shape == (1, 80, 800)
    # Audio longer than 8 s: only its end is heard.
    long = np.concatenate([np.random.default_rng(0).normal(0, 0.3, 16000 * 9), short])
    np.testing.assert_array_equal(features(long), features(long[-8 * 16000 :]))


def test_complete_sentence_scores_higher_than_a_cut_off_fragment(smart_turn):
    # Clean 16 kHz, 0.2 s of silence after the voice (the detector's stop_s).
    scores = {
        text: smart_turn.probability(np.concatenate([voice(text, 16000), silence(0.2, 16000)]))
        for text in (COMPLETE, QUESTION, FRAGMENT)
    }
    print("Smart Turn scores (16 kHz clean, 0.2 s tail):", scores)
    assert scores[COMPLETE] > 0.5
    assert scores[FRAGMENT] < 0.5
    assert scores[QUESTION] > scores[FRAGMENT]
    assert smart_turn.is_complete(scores[COMPLETE])


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 flags")
def test_fused_int8_ops_are_used_only_where_vnni_keeps_them_exact():
    # Without VNNI the fused int8 kernels saturate: a fragment then scored as a whole turn.
    assert int8_ops_saturate("flags\t\t: fpu sse4_2 avx2 fma")
    assert not int8_ops_saturate("flags\t\t: fpu avx2 avx512f avx512_vnni")
    assert not int8_ops_saturate("flags\t\t: fpu avx2 avx_vnni")


async def test_phone_audio_is_resampled_for_the_model(smart_turn):
    audio = np.concatenate([voice(COMPLETE, 8000), silence(0.2)])
    assert await smart_turn.aprobability(audio, 8000) > 0.5


def test_smart_turn_bad_input_and_model(smart_turn, tmp_path):
    with pytest.raises(BadInput, match="mono"):
        smart_turn.probability(np.zeros((2, 1600), dtype=np.int16))
    with pytest.raises(BadInput, match="non-empty"):
        smart_turn.probability(np.zeros(0, dtype=np.int16))
    with pytest.raises(BadInput, match="sample rate"):
        smart_turn.probability(np.zeros(1600, dtype=np.int16), 1000)
    broken = tmp_path / "smart-turn.onnx"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(EngineError, match=str(broken)):
        SmartTurn(broken)


# ------------------------------------------------------------------ TurnDetector


async def test_one_turn_with_accurate_times():
    detector = TurnDetector.from_models(8000)
    speech = voice(QUESTION)
    events = await feed_all(detector, np.concatenate([silence(0.5), speech, silence(1.5)]))
    truth_start, truth_end = 0.5, 0.5 + speech.size / 8000

    assert [type(e) for e in events] == [SpeechStarted, SpeechPaused, TurnEnded]
    (ended,) = of_type(events, TurnEnded)
    assert abs(ended.speech_start_s - truth_start) <= 0.1
    assert abs(ended.speech_end_s - truth_end) <= 0.1
    assert ended.speech_end_s < ended.decision_s <= ended.speech_end_s + 1.1
    assert ended.reason in ("smart_turn", "silence_fallback")
    # The utterance is the whole question, at 16 kHz for the STT, with a little margin.
    assert ended.sample_rate == 16000
    assert speech.size * 2 <= ended.pcm.size <= speech.size * 2 + 0.6 * 16000
    assert ended.pcm.dtype == np.int16
    assert not detector.speaking


async def test_noise_burst_is_not_speech(vad_model):
    rng = np.random.default_rng(7)
    burst = np.clip(rng.normal(0, 6000, 800), -32768, 32767).astype(np.int16)  # 100 ms
    click = np.zeros(80, dtype=np.int16)
    click[:8] = 30000  # 1 ms full-scale click
    # 100 ms cut out of a word: the VAD itself calls it speech, so only the minimum
    # speech duration keeps it from starting a turn.
    snippet = voice(QUESTION)[4000:4800]
    snippet_alone = SileroVAD(vad_model, 8000).process(np.concatenate([snippet, silence(0.2)]))
    assert max(f.probability for f in snippet_alone) >= 0.5

    audio = np.concatenate(
        [silence(0.5), burst, silence(0.5), click, silence(0.5), snippet, silence(1.0)]
    )
    detector = TurnDetector.from_models(8000)
    events = await feed_all(detector, audio)
    assert events == []
    assert not detector.speaking


async def test_two_phrases_with_a_short_gap_make_one_turn():
    first, second = voice("My printer is broken"), voice("and it beeps all the time.")
    audio = np.concatenate([silence(0.5), first, silence(0.15), second, silence(1.5)])
    events = await feed_all(TurnDetector.from_models(8000), audio)

    assert len(of_type(events, SpeechStarted)) == 1
    assert of_type(events, SpeechResumed) == []
    (ended,) = of_type(events, TurnEnded)
    second_end = 0.5 + (first.size + second.size) / 8000 + 0.15
    assert abs(ended.speech_start_s - 0.5) <= 0.1
    assert abs(ended.speech_end_s - second_end) <= 0.1


async def test_fragment_waits_for_the_silence_fallback():
    # Smart Turn hears an unfinished sentence; only the silence fallback ends it.
    options = TurnOptions(fallback_s=1.0)
    detector = TurnDetector.from_models(8000, options)
    speech = voice(FRAGMENT)
    events = await feed_all(detector, np.concatenate([silence(0.5), speech, silence(1.5)]))

    (ended,) = of_type(events, TurnEnded)
    print("fragment: reason", ended.reason, "last Smart Turn score", ended.probability)
    assert ended.reason == "silence_fallback"
    assert ended.probability is not None and ended.probability < 0.5
    # Silence is counted from the last speech frame, within a frame or two of VAD lag.
    assert 1.0 <= ended.decision_s - ended.speech_end_s <= 1.0 + 0.2


async def test_silence_fallback_ends_the_turn_without_smart_turn(vad_model):
    detector = TurnDetector(vad_model, None, 8000, TurnOptions(fallback_s=0.6))
    events = await feed_all(detector, np.concatenate([silence(0.3), voice(COMPLETE), silence(1.0)]))
    (ended,) = of_type(events, TurnEnded)
    assert ended.reason == "silence_fallback"
    assert ended.probability is None


async def test_pause_then_more_speech_resumes_the_same_turn():
    first, second = voice(FRAGMENT), voice("receipt printer.")
    audio = np.concatenate([silence(0.5), first, silence(0.5), second, silence(1.5)])

    async def phone_frames():
        # As the telephony delivers them; a zero sleep lets other tasks run in between.
        for i in range(0, audio.size, 160):
            yield audio[i : i + 160]
            await asyncio.sleep(0)

    events = [e async for e in TurnDetector.from_models(8000).events(phone_frames())]

    kinds = [type(e) for e in events]
    assert kinds[:3] == [SpeechStarted, SpeechPaused, SpeechResumed]
    assert kinds[-1] is TurnEnded and kinds.count(TurnEnded) == 1
    paused, resumed, ended = events[1], events[2], events[-1]
    # The pause hands over what was said so far, for a speculative transcription.
    assert abs(paused.pcm.size / 16000 - first.size / 8000) <= 0.6
    assert abs(resumed.resumed_s - (0.5 + first.size / 8000 + 0.5)) <= 0.1
    # Silero's score lingers a few frames after a phone-line word ends (~0.12 s here).
    assert abs(ended.speech_end_s - (0.5 + (first.size + second.size) / 8000 + 0.5)) <= 0.15


async def test_a_short_blip_in_a_pause_does_not_resume_the_turn():
    blip = voice(QUESTION)[4000:4240]  # 30 ms of voice: under resume_min_s
    speech = voice(FRAGMENT)
    audio = np.concatenate([silence(0.5), speech, silence(0.4), blip, silence(1.5)])
    events = await feed_all(TurnDetector.from_models(8000), audio)

    assert of_type(events, SpeechResumed) == []
    (ended,) = of_type(events, TurnEnded)
    assert ended.reason == "silence_fallback"
    # The silence clock ran through the blip: the turn ends 1 s after the fragment.
    assert abs(ended.speech_end_s - (0.5 + speech.size / 8000)) <= 0.1
    assert ended.decision_s - ended.speech_end_s <= 1.0 + 0.2


async def test_voice_events_mark_first_voice_and_blips_before_a_turn():
    # Barge-in pauses the agent at VoiceStarted and resumes it at VoiceStopped.
    word = voice("ah")
    blip = word[:1200]  # 150 ms of voice: under min_speech_s
    speech = voice(QUESTION)
    speech_at = 0.5 + blip.size / 8000 + 0.8
    audio = np.concatenate([silence(0.5), blip, silence(0.8), speech, silence(1.5)])
    options = TurnOptions(min_speech_s=0.3, voice_events=True)
    events = await feed_all(TurnDetector.from_models(8000, options), audio)

    kinds = [type(e) for e in events]
    assert kinds[:4] == [VoiceStarted, VoiceStopped, VoiceStarted, SpeechStarted], kinds
    assert kinds.count(VoiceStarted) == 2 and kinds[-1] is TurnEnded  # none inside the turn
    blip_on, blip_off, voice_on, started = events[:4]
    # The first voiced frame is seen within a frame or two (32 ms each) of the voice.
    assert abs(blip_on.start_s - 0.5) <= 0.1 and blip_on.at_s - 0.5 <= 0.1
    assert blip_off.at_s - 0.5 <= 0.5  # the blip ends the pause soon after it ends
    assert abs(voice_on.start_s - speech_at) <= 0.1 and voice_on.at_s - speech_at <= 0.1
    assert started.at_s - voice_on.at_s >= 0.2  # confirmation takes min_speech_s


async def test_voice_events_are_off_by_default():
    events = await feed_all(TurnDetector.from_models(8000), voice("ah")[:1200])
    assert events == []


async def test_long_speech_is_cut_at_max_utterance():
    options = TurnOptions(max_utterance_s=2.0, pre_roll_s=0.3, post_roll_s=0.2)
    detector = TurnDetector.from_models(16000, options)
    speech = voice("The printer on register four prints blank receipts every morning.", 16000)
    assert speech.size / 16000 > 3.0
    events = await feed_all(detector, np.concatenate([speech, silence(1.5, 16000)]))

    ends = of_type(events, TurnEnded)
    assert ends[0].reason == "max_length"
    assert ends[0].pcm.size <= (2.0 + 0.3 + 0.2 + 0.04) * 16000
    # Speech goes on after the cut: it is a new turn, which ends normally.
    assert len(of_type(events, SpeechStarted)) == len(ends) == 2
    assert ends[-1].reason in ("smart_turn", "silence_fallback")


async def test_reset_drops_a_turn_in_progress():
    detector = TurnDetector.from_models(8000)
    events = await feed_all(detector, np.concatenate([silence(0.3), voice(COMPLETE)]))
    assert of_type(events, SpeechStarted) and detector.speaking
    detector.reset()
    assert not detector.speaking
    assert await feed_all(detector, silence(1.5)) == []


async def test_bad_frames_and_options_are_clear_errors(vad_model):
    detector = TurnDetector(vad_model, None, 8000)
    with pytest.raises(BadInput, match="int16"):
        await detector.feed(np.zeros(160, dtype=np.float32))
    with pytest.raises(BadInput, match="mono"):
        await detector.feed(np.zeros((160, 2), dtype=np.int16))
    with pytest.raises(BadInput, match="fallback_s"):
        TurnOptions(stop_s=0.5, fallback_s=0.3)
    with pytest.raises(BadInput, match="min_speech_s"):
        TurnOptions(min_speech_s=0)
    with pytest.raises(BadInput, match="8000 or 16000"):
        TurnDetector(vad_model, None, 48000)
    # Still works after rejecting bad frames.
    assert await detector.feed(silence(0.02)) == []
