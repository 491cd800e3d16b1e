"""Real SIP peers for the tests: sipp, baresip, kamailio, and a tcpdump RTP
capture on loopback. Each runs bounded in time; a missing tool fails loudly."""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from telephony.g711 import alaw_decode, ulaw_decode
from telephony.rtp import RtpError, parse_rtp

HERE = Path(__file__).parent
SIPP_DIR = HERE / "sipp"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed: apt-get install the package providing it")
    return path


def write_wav(path: Path, pcm: np.ndarray, encoding: str) -> Path:
    """16-bit PCM -> an 8 kHz G.711 wav (encoding 'u-law' or 'a-law'), via sox."""
    cmd = [require("sox"), "-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1", "-"]
    cmd += ["-e", encoding, "-b", "8", str(path)]
    subprocess.run(cmd, input=pcm.astype("<i2").tobytes(), check=True, capture_output=True)
    return path


def write_rtp_pcap(path: Path, pcm: np.ndarray, payload_type: int, *, dtmf: str = "") -> Path:
    """A pcap of 20 ms RTP packets carrying `pcm` (then RFC 4733 `dtmf` digits),
    for sipp's play_pcap_audio: sipp replays payloads and timing as captured."""
    from telephony.dtmf import TelephoneEvent
    from telephony.g711 import alaw_encode, ulaw_encode
    from telephony.rtp import RtpPacket

    encode = ulaw_encode if payload_type == 0 else alaw_encode
    packets: list[bytes] = []
    seq, ts = 1, 0
    for start in range(0, len(pcm) - 159, 160):
        packets.append(
            RtpPacket(payload_type, seq, ts, 0x5151, encode(pcm[start : start + 160])).build()
        )
        seq, ts = seq + 1, ts + 160
    for digit in dtmf:
        for i in range(1, 9):
            end = i == 8
            for _ in range(3 if end else 1):
                event = TelephoneEvent(digit, end, 10, i * 160).build()
                packets.append(RtpPacket(101, seq, ts, 0x5151, event, marker=i == 1).build())
                seq += 1
        ts += 8 * 160
        for _ in range(5):  # silence between digits
            packets.append(
                RtpPacket(payload_type, seq, ts, 0x5151, encode(np.zeros(160, np.int16))).build()
            )
            seq, ts = seq + 1, ts + 160
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for n, rtp in enumerate(packets):
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp  # fmt: skip
        frame = bytes(12) + b"\x08\x00" + ip
        usec = n * 20000
        out.append(
            struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame))
        )
        out.append(frame)
    path.write_bytes(b"".join(out))
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    data, rate = soundfile.read(str(path), dtype="int16")
    if data.ndim > 1:
        data = data[:, 0]
    return data, rate


def render(template: str, out: Path, **values: object) -> Path:
    text = (SIPP_DIR / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key.upper()}@", str(value))
    out.write_text(text)
    return out


@dataclass
class SippResult:
    returncode: int
    output: str
    messages: str

    def check(self) -> None:
        assert self.returncode == 0, f"sipp failed ({self.returncode}):\n{self.output[-3000:]}"


async def run_sipp(
    scenario: Path,
    target: str,
    *,
    port: int,
    media_port: int,
    extra: list[str] | None = None,
    timeout_s: float = 30.0,
) -> SippResult:
    """Run sipp once in the scenario's folder; port+1 is its control port."""
    args = [require("sipp")]
    if target:
        args.append(target)
    args += ["-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-cp", str(port + 1)]
    args += ["-mp", str(media_port), "-nostdin", "-trace_msg", "-trace_err"]
    args += ["-timeout", f"{int(timeout_s)}s", "-timeout_error", *(extra or [])]
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=scenario.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s + 10)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    messages = "".join(
        p.read_text(errors="replace")
        for p in scenario.parent.glob(f"{scenario.stem}_*_messages.log")
    )
    errors = "".join(
        p.read_text(errors="replace") for p in scenario.parent.glob(f"{scenario.stem}_*_errors.log")
    )
    return SippResult(proc.returncode or 0, out.decode(errors="replace") + errors, messages)


class RtpCapture:
    """tcpdump on lo: every UDP datagram sent to `port`, parsed as RTP afterwards."""

    def __init__(self, path: Path, port: int) -> None:
        self.path = path
        self.port = port
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> RtpCapture:
        self._proc = await asyncio.create_subprocess_exec(
            require("tcpdump"), "-i", "lo", "-U", "-w", str(self.path),
            "udp", "and", "dst", "port", str(self.port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._proc.stderr is not None
        line = await asyncio.wait_for(self._proc.stderr.readline(), 10)
        if b"listening" not in line:
            raise RuntimeError(f"tcpdump did not start: {line!r} (needs CAP_NET_RAW)")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._proc is not None
        await asyncio.sleep(0.2)
        self._proc.terminate()
        await asyncio.wait_for(self._proc.wait(), 10)

    def packets(self) -> list[tuple[tuple[str, int], object]]:
        """[(source address, RtpPacket)] in capture order."""
        data = self.path.read_bytes()
        if len(data) < 24:
            return []
        endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
        (linktype,) = struct.unpack(endian + "I", data[20:24])
        link_len = {1: 14, 113: 16, 0: 4}[linktype]
        out, offset = [], 24
        while offset + 16 <= len(data):
            _, _, caplen, _ = struct.unpack(endian + "IIII", data[offset : offset + 16])
            frame = data[offset + 16 : offset + 16 + caplen]
            offset += 16 + caplen
            ip = frame[link_len:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 0x0F) * 4
            src = ".".join(str(b) for b in ip[12:16])
            sport = struct.unpack("!H", ip[ihl : ihl + 2])[0]
            try:
                out.append(((src, sport), parse_rtp(ip[ihl + 8 :])))
            except RtpError:
                continue
        return out

    def audio(self, payload_type: int) -> np.ndarray:
        decode = ulaw_decode if payload_type == 0 else alaw_decode
        payloads = [p.payload for _, p in self.packets() if p.payload_type == payload_type]
        return decode(b"".join(payloads)) if payloads else np.zeros(0, np.int16)


def baresip_config(folder: Path, *, sip_port: int, rtp_range: tuple[int, int],
                   source_wav: Path, auto_answer: bool = False) -> Path:  # fmt: skip
    """A self-contained baresip config: aufile plays source_wav; sndfile dumps what
    it sends and hears into folder/dump-*-enc.wav / dump-*-dec.wav."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"sip_listen 127.0.0.1:{sip_port}",
        "net_interface 127.0.0.1",
        f"rtp_ports {rtp_range[0]}-{rtp_range[1]}",
        "module_path /usr/lib/baresip/modules",
        f"audio_source aufile,{source_wav}",
        "audio_player aufile,/dev/null",
        "audio_alert aufile,/dev/null",
        "ausrc_srate 8000",
        "auplay_srate 8000",
        f"snd_path {folder}",
        *(f"module {m}.so" for m in ("g711", "aufile", "sndfile", "uuid", "account", "menu")),
        "module_app menu.so",
    ]
    (folder / "config").write_text("\n".join(lines) + "\n")
    answer = ";answermode=auto" if auto_answer else ""
    (folder / "accounts").write_text(
        f"<sip:baresip@127.0.0.1:{sip_port}>;regint=0{answer};audio_codecs=PCMU\n"
    )
    (folder / "contacts").write_text("")
    return folder


async def run_baresip(folder: Path, *, command: str | None, quit_after_s: int) -> str:
    args = [require("baresip"), "-f", str(folder), "-t", str(quit_after_s)]
    if command:
        args += ["-e", command]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=folder, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), quit_after_s + 10)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    return out.decode(errors="replace")


def baresip_heard(folder: Path) -> np.ndarray:
    dumps = sorted(folder.glob("dump-*-dec.wav"))
    assert dumps, f"baresip recorded nothing in {folder}"
    return read_wav(dumps[-1])[0]


class Kamailio:
    """kamailio on 127.0.0.1:`port` with tests/telephony/kamailio/kamailio.cfg, its
    own db_text folder, pid file and runtime dir under `folder`."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.output = b""
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Kamailio:
        source = HERE / "kamailio"
        db = self.folder / "db"
        db.mkdir(parents=True, exist_ok=True)
        for table in (source / "db").iterdir():
            shutil.copy(table, db / table.name)
        cfg = (source / "kamailio.cfg").read_text()
        cfg = cfg.replace("KAMAILIO_PORT", str(self.port)).replace("DB_DIR", str(db))
        cfg = cfg.replace("RUN_DIR", str(self.folder))
        (self.folder / "kamailio.cfg").write_text(cfg)
        self._proc = await asyncio.create_subprocess_exec(
            require("kamailio"), "-f", str(self.folder / "kamailio.cfg"),
            "-P", str(self.folder / "kamailio.pid"), "-Y", str(self.folder), "-DD", "-E",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        await self._wait_ready()
        return self

    async def _wait_ready(self) -> None:
        import socket

        probe = (
            f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprobe;rport\r\n"
            "From: <sip:probe@127.0.0.1>;tag=1\r\n"
            f"To: <sip:127.0.0.1:{self.port}>\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 5\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            for _ in range(50):
                assert self._proc is not None
                if self._proc.returncode is not None:
                    break
                sock.sendto(probe, ("127.0.0.1", self.port))
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.2)
                    if data.startswith(b"SIP/2.0 200"):
                        return
                except TimeoutError:
                    pass
        finally:
            sock.close()
        out = await self._stop()
        raise RuntimeError(f"kamailio did not start on {self.port}:\n{out[-3000:]}")

    async def _stop(self) -> str:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                out, _ = await asyncio.wait_for(self._proc.communicate(), 10)
            except TimeoutError:
                self._proc.kill()
                out, _ = await self._proc.communicate()
            self.output = out or b""
        return self.output.decode(errors="replace")

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()
