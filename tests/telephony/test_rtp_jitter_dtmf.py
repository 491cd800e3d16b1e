import numpy as np
import pytest

from telephony.dtmf import DtmfError, TelephoneEvent, check_digits, dtmf_tone, parse_event
from telephony.jitter import JitterBuffer
from telephony.rtp import RtpError, RtpPacket, parse_rtp, seq_delta
from tests.telephony.audio_checks import dominant_frequency


def test_rtp_round_trip() -> None:
    packet = RtpPacket(8, 65535, 2**32 - 160, 0xDEADBEEF, b"\xd5" * 160, marker=True)
    assert parse_rtp(packet.build()) == packet


def test_rtp_with_csrc_extension_and_padding() -> None:
    header = bytes([0x80 | 0x20 | 0x10 | 1, 0, 0, 1]) + bytes(8)
    data = header + bytes(4) + b"\xbe\xde\x00\x01" + bytes(4) + b"audio" + b"\x00\x00\x03"
    assert parse_rtp(data).payload == b"audio"


@pytest.mark.parametrize(
    "garbage",
    [b"", b"hello", b"\x00" * 12, bytes([0x80, 200]) + bytes(10), b"OPTIONS sip:x SIP/2.0\r\n"],
)
def test_garbage_is_rejected_not_crashing(garbage: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtp(garbage)


def test_seq_delta_wraps() -> None:
    assert seq_delta(2, 65534) == 4
    assert seq_delta(65534, 2) == -4


def test_jitter_buffer_reorders_and_fills_loss() -> None:
    jb = JitterBuffer(depth=3, capacity=10)
    for seq in (100, 102, 101, 104, 105):  # 103 lost, 101/102 swapped
        jb.push(seq, bytes([seq - 100]))
    played = [jb.pop() for _ in range(6)]
    assert played == [b"\x00", b"\x01", b"\x02", None, b"\x04", b"\x05"]
    assert jb.stats.lost == 1


def test_jitter_buffer_drops_late_and_duplicates() -> None:
    jb = JitterBuffer(depth=2, capacity=10)
    jb.push(10, b"a")
    jb.push(11, b"b")
    assert jb.pop() == b"a"
    jb.push(10, b"late")
    jb.push(11, b"dup")
    assert jb.pop() == b"b"
    assert (jb.stats.late, jb.stats.duplicate) == (1, 1)


def test_jitter_buffer_is_bounded_and_resyncs() -> None:
    jb = JitterBuffer(depth=3, capacity=10)
    for seq in range(1000, 1100):  # a burst nobody plays out
        jb.push(seq, b"x")
    assert len(jb) <= 10
    jb.push(40000, b"new stream")
    assert jb.stats.resets >= 1
    assert len(jb) == 1


def test_jitter_buffer_wraps_sequence_numbers() -> None:
    jb = JitterBuffer(depth=1, capacity=10)
    out = []
    for seq in (65534, 65535, 0, 1):
        jb.push(seq, seq.to_bytes(2, "big"))
        out.append(jb.pop())
    assert out == [s.to_bytes(2, "big") for s in (65534, 65535, 0, 1)]


def test_telephone_event_round_trip() -> None:
    event = TelephoneEvent("#", True, 10, 1280)
    assert parse_event(event.build()) == event


def test_bad_events_and_digits() -> None:
    with pytest.raises(DtmfError):
        parse_event(b"\x10\x80")  # truncated
    with pytest.raises(DtmfError):
        parse_event(bytes([42, 0x80, 0, 160]))  # not a DTMF event
    with pytest.raises(DtmfError, match="0-9"):
        check_digits("12x")


def test_dtmf_tone_has_both_frequencies() -> None:
    pcm = np.frombuffer(dtmf_tone("1", 200), "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(pcm))
    freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
    top = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert abs(top[0] - 697) < 10 and abs(top[1] - 1209) < 10
    assert dominant_frequency(np.frombuffer(dtmf_tone("1", 200), "<i2")) in (
        pytest.approx(697, abs=10),
        pytest.approx(1209, abs=10),
    )
