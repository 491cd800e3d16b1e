"""Telephony benchmark: N concurrent sipp calls into an echo endpoint.

For each N, sipp places N calls that each play `--seconds` of a 1 kHz tone
(RTP from a pcap); the endpoint echoes it back. tcpdump records every RTP
packet the endpoint sends, and from the wire we compute per call:
- send-pacing jitter: |actual send time - ideal 20 ms grid| after removing the
  call's constant offset (p50 / p99 over all packets of all calls);
- drift: slope of the send-time error over the call (ms per minute);
- loss: echoed tone frames missing versus what the caller sent;
- CPU per call: the endpoint process's CPU time / wall time / N.
The same run measures pyVoIP 1.6.8 as shipped (registration bypassed, since
it refuses to run without a registrar) as the baseline.

Run: .venv/bin/python benchmarks/telephony.py [--sizes 10,50,100,200] [--seconds 8]
Needs sipp and tcpdump (root or CAP_NET_RAW); loopback ports 15000-15999.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.telephony.audio_checks import tone  # noqa: E402
from tests.telephony.peers import RtpCapture, render, run_sipp, write_rtp_pcap  # noqa: E402

SERVER_SIP = 15070
SERVER_RTP = (15100, 15599)
SIPP_PORT = 15680
SIPP_MEDIA = 15690
FRAME_S = 0.020
LONG_S = 60.0


@dataclass
class Result:
    impl: str
    calls: int
    answered: int
    jitter_p50_ms: float
    jitter_p99_ms: float
    drift_ms: float  # send-time error gained over the call
    drift_ms_per_min: float
    loss_pct: float
    cpu_pct_per_call: float

    @property
    def clean(self) -> bool:
        return (
            self.answered == self.calls
            and self.jitter_p99_ms < 5.0
            and abs(self.drift_ms) < 2.0
            and self.loss_pct < 1.0
        )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def start_server(impl: str) -> asyncio.subprocess.Process:
    if impl == "trunkline":
        args = [str(Path(sys.executable).parent / "trunkline"), "echo-test",
                "--bind", f"127.0.0.1:{SERVER_SIP}", "--rtp-ports",
                f"{SERVER_RTP[0]}-{SERVER_RTP[1]}"]  # fmt: skip
    else:
        args = [sys.executable, __file__, "serve-pyvoip"]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 30)
    if b"listening" not in line:
        raise RuntimeError(f"{impl} server did not start: {line!r}")
    return proc


def analyse(capture: RtpCapture, calls: int, seconds: float) -> tuple[list, list, list, float]:
    """(jitter values ms, drift ms per stream, drift ms/min per stream, loss %)."""
    import struct

    data = capture.path.read_bytes()
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    streams: dict[int, list[tuple[float, int, bytes]]] = {}
    offset = 24
    from telephony.rtp import RtpError, parse_rtp

    while offset + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack(endian + "IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        sport = struct.unpack("!H", ip[ihl : ihl + 2])[0]
        try:
            packet = parse_rtp(ip[ihl + 8 :])
        except RtpError:
            continue
        if packet.payload_type != 0:
            continue
        streams.setdefault(sport, []).append((sec + usec / 1e6, packet.sequence, packet.payload))
    from telephony.g711 import ulaw_decode

    jitter: list[float] = []
    drifts: list[float] = []
    drift_rates: list[float] = []
    voiced_frames = 0
    for packets in streams.values():
        if len(packets) < 20:
            continue
        times = np.array([t for t, _, _ in packets])
        seqs = np.unwrap(np.array([s for _, s, _ in packets], dtype=float), period=65536)
        error = times - times[0] - (seqs - seqs[0]) * FRAME_S
        error -= np.median(error)
        jitter.extend(np.abs(error) * 1000)
        # drift: error gained from the first to the last quarter of the call
        quarter = max(len(error) // 4, 1)
        gained = float(np.median(error[-quarter:]) - np.median(error[:quarter]))
        span = times[-quarter // 2] - times[quarter // 2]
        drifts.append(gained * 1000)
        drift_rates.append(gained * 1000 * 60 / max(span, 1e-3))
        for _, _, payload in packets:
            pcm = ulaw_decode(payload).astype(float)
            if np.sqrt(np.mean(pcm**2)) > 32767 * 10 ** (-40 / 20):
                voiced_frames += 1
    expected = calls * int(seconds / FRAME_S)
    loss = max(0.0, 100.0 * (expected - voiced_frames) / expected)
    return jitter, drifts, drift_rates, loss


async def measure(impl: str, calls: int, seconds: float, folder: Path) -> Result:
    pcap = write_rtp_pcap(folder / "tone.pcap", tone(1000, seconds, -12), 0)
    scenario = render("uac_tone.xml", folder / f"uac_{impl}_{calls}.xml", pt=0, codec="PCMU",
                      pcap=pcap, hold_ms=int(seconds * 1000) + 1000)  # fmt: skip
    server = await start_server(impl)
    try:
        await asyncio.sleep(1.0)
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        capture_path = folder / f"{impl}_{calls}.pcap"
        capture = RtpCapture(capture_path, SIPP_MEDIA)
        async with capture:
            rate = max(calls, 10)  # all calls up within about a second
            result = await run_sipp(
                scenario, f"127.0.0.1:{SERVER_SIP}", port=SIPP_PORT, media_port=SIPP_MEDIA,
                extra=["-s", "echo", "-m", str(calls), "-l", str(calls), "-r", str(rate),
                       "-max_socket", "2000"],
                timeout_s=seconds + 40,
            )  # fmt: skip
        cpu = cpu_seconds(server.pid) - cpu0
        wall = time.monotonic() - t0
    finally:
        server.terminate()
        await server.wait()
    answered = _successful_calls(result.output)
    jitter, drifts, drift_rates, loss = analyse(capture, calls, seconds)
    return Result(
        impl=impl,
        calls=calls,
        answered=answered,
        jitter_p50_ms=float(np.percentile(jitter, 50)) if jitter else float("nan"),
        jitter_p99_ms=float(np.percentile(jitter, 99)) if jitter else float("nan"),
        drift_ms=float(statistics.median(drifts)) if drifts else float("nan"),
        drift_ms_per_min=float(statistics.median(drift_rates)) if drifts else float("nan"),
        loss_pct=loss,
        cpu_pct_per_call=100.0 * cpu / wall / calls,
    )


def _successful_calls(output: str) -> int:
    for line in output.splitlines():
        if "Successful call" in line:
            return int(line.split("|")[2].split()[0])
    return 0


def serve_pyvoip() -> None:
    """pyVoIP 1.6.8 as shipped, echoing: read_audio -> write_audio."""
    import warnings

    warnings.simplefilter("ignore")
    import pyVoIP.VoIP  # noqa: F401 - import order: pyVoIP.SIP needs VoIP first
    from pyVoIP import SIP
    from pyVoIP.VoIP import CallState, VoIPPhone

    SIP.SIPClient.register = lambda self: True  # no registrar: pyVoIP cannot run without one

    def on_call(call) -> None:
        try:
            call.answer()
            while call.state == CallState.ANSWERED:
                call.write_audio(call.read_audio(160, blocking=True))
        except Exception:
            pass

    # pyVoIP sends all SIP to its "server": point it at the caller (sipp)
    phone = VoIPPhone("127.0.0.1", SIPP_PORT, "echo", "x", myIP="127.0.0.1",
                      callCallback=on_call, sipPort=SERVER_SIP,
                      rtpPortLow=SERVER_RTP[0], rtpPortHigh=SERVER_RTP[1])  # fmt: skip
    phone.start()
    print("pyVoIP listening", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        phone.stop()


def markdown(results: list[Result], seconds: float, long_call: Result | None) -> str:
    lines = [
        "# Telephony benchmark",
        "",
        f"N concurrent sipp calls (PCMU, {seconds:g} s of 1 kHz tone each, echoed back), one",
        "endpoint process, loopback, 2-core shared VM. Jitter and drift are measured on the",
        "wire (tcpdump) from the endpoint's send times against the ideal 20 ms grid.",
        f"Load average when the run ended: {os.getloadavg()[0]:.1f} (2 cores, shared).",
        "",
        "| impl | calls | answered | jitter p50 ms | jitter p99 ms | drift ms (per min) | "
        "loss % | CPU %/call | clean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.impl} | {r.calls} | {r.answered} | {r.jitter_p50_ms:.2f} | "
            f"{r.jitter_p99_ms:.2f} | {r.drift_ms:+.2f} ({r.drift_ms_per_min:+.1f}) | "
            f"{r.loss_pct:.1f} | "
            f"{r.cpu_pct_per_call:.2f} | {'yes' if r.clean else 'no'} |"
        )
    for impl in dict.fromkeys(r.impl for r in results):
        clean = [r.calls for r in results if r.impl == impl and r.clean]
        lines.append("")
        lines.append(f"- {impl}: max clean calls measured: {max(clean) if clean else 0}")
    if long_call is not None:
        lines += [
            "",
            f"Long calls (drift): trunkline, 10 calls x {LONG_S:g} s: "
            f"drift {long_call.drift_ms:+.2f} ms over the call ({long_call.drift_ms_per_min:+.2f} "
            f"ms/min), jitter p50 {long_call.jitter_p50_ms:.2f} / p99 "
            f"{long_call.jitter_p99_ms:.2f} ms, loss {long_call.loss_pct:.1f} %.",
        ]
    lines.append("")
    lines.append(
        "clean = all answered, p99 jitter < 5 ms, |drift over the call| < 2 ms "
        "(the resolution of a short call), echoed-audio loss < 1 %."
    )
    return "\n".join(lines) + "\n"


async def run(
    sizes: list[int], seconds: float, impls: list[str], long_s: float
) -> tuple[list[Result], Result | None]:
    results = []
    with tempfile.TemporaryDirectory(prefix="trunkline-bench-") as tmp:
        for impl in impls:
            for calls in sizes:
                result = await measure(impl, calls, seconds, Path(tmp))
                print(result, flush=True)
                results.append(result)
        # drift needs a long call to be resolved: 10 calls of long_s seconds
        long_call = await measure("trunkline", 10, long_s, Path(tmp)) if long_s > 0 else None
        print(long_call, flush=True)
    return results, long_call


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve-pyvoip":
        serve_pyvoip()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,50,100,200")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--impls", default="trunkline,pyvoip")
    parser.add_argument("--long-seconds", type=float, default=60.0, help="0: skip")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/telephony.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    global LONG_S
    LONG_S = args.long_seconds
    results, long_call = asyncio.run(
        run(sizes, args.seconds, args.impls.split(","), args.long_seconds)
    )
    args.out.write_text(markdown(results, args.seconds, long_call))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
