"""The pieces `trunkline call` / `serve` are made of, on real espeak-ng speech: turning a
caller recording into utterances, and the `sip:` / `agent:` config sections."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from agent.app.settings import parse_agent_settings, parse_host_port, parse_port_range
from agent.app.utterances import read_caller_audio, split_utterances, trailing_silence_s
from serving.base import BadInput
from serving.factory import ConfigError
from tests.e2e.conftest import caller_speech
from tests.speech import speak


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * 8000), np.int16)


def test_a_recording_splits_into_utterances_at_long_silences_only():
    first, second = caller_speech("Hello there."), caller_speech("My printer is jammed.")
    third = caller_speech("Can you help?")
    pcm = np.concatenate([silence(1.0), first, silence(1.2), second, silence(0.3), third])
    parts = split_utterances(pcm)
    # espeak pads its speech with ~0.1-0.3 s of silence, so the 0.3 s pause stays
    # well under the 0.7 s gap: "jammed" and "help" are one utterance
    assert len(parts) == 2
    assert abs(parts[0].size - first.size) < 0.6 * 8000
    assert parts[1].size > (second.size + third.size) * 0.7
    assert all(trailing_silence_s(p) <= 0.2 for p in parts)


def test_only_silence_or_clicks_is_no_utterance():
    click = np.zeros(8000, np.int16)
    click[4000:4040] = 20000  # 5 ms
    assert split_utterances(np.concatenate([silence(2.0), click])) == []


def test_caller_audio_of_any_rate_becomes_8k_and_bad_files_are_refused():
    pcm, rate = speak("Hello.", rate=16000)
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, format="WAV", subtype="PCM_16")
    out = read_caller_audio(buf.getvalue())
    assert out.dtype == np.int16 and abs(out.size - pcm.size / 2) <= 2
    with pytest.raises(BadInput, match=r"truncated|corrupt|decoded"):
        read_caller_audio(buf.getvalue()[:30])


def test_agent_and_sip_config_sections():
    settings = parse_agent_settings(
        {
            "sip": {"bind": "127.0.0.1:16065", "rtp_ports": "16100-16110"},
            "agent": {"greeting": "Hello!", "max_tokens": 40, "turn": {"min_speech_s": 0.25}},
        }
    )
    assert settings.sip.bind == ("127.0.0.1", 16065)
    assert settings.sip.rtp_ports == (16100, 16110)
    assert settings.session.greeting == "Hello!" and settings.session.max_tokens == 40
    assert settings.session.turn.min_speech_s == 0.25
    with pytest.raises(ConfigError, match="agent: unknown keys \\['greting'\\]"):
        parse_agent_settings({"agent": {"greting": "typo"}})
    with pytest.raises(ConfigError, match="holding_after_s must be > 0"):
        parse_agent_settings({"agent": {"holding_after_s": 0}})
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_host_port("127.0.0.1:http")
    with pytest.raises(ConfigError, match="LOW < HIGH"):
        parse_port_range("16200-16100")
