import asyncio
import time

import numpy as np

from telephony.clock import MediaClock, Pacer


async def test_pacer_does_not_drift_under_a_busy_loop() -> None:
    # 250 ticks (5 s of audio), with the event loop kept busy 5 ms per tick, as a
    # real call's other work would. Deadlines are absolute, so wake-up lateness
    # stays flat; pacing relative to the previous send (pyVoIP) adds the busy
    # time every frame: 250 x 5 ms = 1.25 s behind by the end.
    pacer = Pacer(0.020)
    for _ in range(250):
        await pacer.wait()
        woke = time.monotonic()
        while time.monotonic() < woke + 0.005:
            pass
    lateness = np.array(pacer.stats.lateness_s)
    # medians: robust to the odd scheduler stall on a shared machine
    gained = np.median(lateness[-50:]) - np.median(lateness[:50])
    assert gained < 0.003, f"drifted {gained * 1000:.1f} ms over 5 s"
    assert pacer.n >= 250 and abs(pacer.deadline() - pacer.start - pacer.n * 0.020) < 1e-9


async def test_pacer_skips_ahead_after_a_long_stall() -> None:
    pacer = Pacer(0.020, max_lag_s=0.1)
    await pacer.wait()
    time.sleep(0.3)  # noqa: ASYNC251 - the loop stalled, on purpose
    await pacer.wait()
    assert pacer.stats.resyncs == 1
    lateness = await pacer.wait()
    assert lateness < 0.02  # back on the grid, not bursting through 15 missed frames


async def test_media_clock_calls_every_session_each_tick() -> None:
    clock = MediaClock()
    counts = {"a": 0, "b": 0}
    clock.add("a", lambda: counts.__setitem__("a", counts["a"] + 1))
    clock.add("b", lambda: counts.__setitem__("b", counts["b"] + 1))
    await asyncio.sleep(0.21)
    clock.remove("b")
    await asyncio.sleep(0.1)
    await clock.stop()
    assert 9 <= counts["b"] <= 11
    assert counts["a"] >= counts["b"] + 4
