"""The link model (pure) and the TCP relay (real sockets on loopback): delay, rate, outages."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from clients.bench.link import Direction, DirectionSpec, Outage, RateStep
from clients.bench.relay import LinkRelay, LinkSpec


def test_delay_and_serialisation() -> None:
    d = Direction(DirectionSpec(delay_ms=10, mbps=8))  # 1 byte per microsecond
    assert d.schedule(0.0, 1000) == pytest.approx(0.001 + 0.010)
    # queued behind the first chunk: starts transmitting at 1 ms
    assert d.schedule(0.0, 1000) == pytest.approx(0.002 + 0.010)
    # an idle link starts at once
    assert d.schedule(1.0, 500) == pytest.approx(1.0005 + 0.010)


def test_unlimited_rate_is_pure_delay() -> None:
    d = Direction(DirectionSpec(delay_ms=25))
    assert d.schedule(2.0, 10**6) == pytest.approx(2.025)


def test_jitter_never_reorders_and_stays_in_bounds() -> None:
    d = Direction(DirectionSpec(delay_ms=50, jitter_ms=10), seed=7)
    times = [d.schedule(i * 0.001, 100) for i in range(500)]
    assert times == sorted(times)
    lat = [t - i * 0.001 for i, t in enumerate(times)]
    assert min(lat) >= 0.040 - 1e-9 and max(lat) <= 0.060 + 1e-9
    assert statistics.pstdev(lat) > 0.002  # there is jitter


def test_a_lost_chunk_arrives_a_retransmission_late_and_holds_what_follows() -> None:
    d = Direction(DirectionSpec(delay_ms=10, loss=0.1, rto_ms=200), seed=3)
    times = [d.schedule(i * 0.01, 100) for i in range(2000)]
    assert times == sorted(times)  # in order, as TCP delivers
    late = [t - i * 0.01 for i, t in enumerate(times) if t - i * 0.01 > 0.2]
    assert 0.05 < len(late) / 2000 < 0.4  # the lost ones and those queued behind them
    assert max(t - i * 0.01 for i, t in enumerate(times)) <= 0.21 + 1e-9


def test_outage_stalls_until_the_link_returns() -> None:
    d = Direction(DirectionSpec(delay_ms=5), outages=(Outage(1.0, 5.0),))
    assert d.schedule(0.5, 10) == pytest.approx(0.505)
    assert d.schedule(2.0, 10) == pytest.approx(6.005)


def test_rate_schedule_repeats() -> None:
    spec = DirectionSpec(schedule=(RateStep(0, 10), RateStep(20, 80)), period_s=40)
    assert spec.rate_bytes_per_s(5) == 10e6 / 8
    assert spec.rate_bytes_per_s(25) == 80e6 / 8
    assert spec.rate_bytes_per_s(45) == 10e6 / 8


# ---- the real relay ------------------------------------------------------------------------------
async def _echo_server() -> asyncio.base_events.Server:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except ConnectionError:
            pass  # the relay cut the connection (reset outage)
        finally:
            w.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _with_relay(spec: LinkSpec, body):  # type: ignore[no-untyped-def]
    echo = await _echo_server()
    relay = LinkRelay(spec, "127.0.0.1", echo.sockets[0].getsockname()[1])
    await relay.start()
    try:
        return await body(relay)
    finally:
        await relay.stop()
        echo.close()
        await echo.wait_closed()


def test_relay_imposes_round_trip_delay_within_a_millisecond_or_two() -> None:
    async def body(relay: LinkRelay) -> list[float]:
        r, w = await asyncio.open_connection("127.0.0.1", relay.port)
        rtts = []
        for _ in range(15):
            t0 = time.perf_counter()
            w.write(b"ping")
            await w.drain()
            await r.readexactly(4)
            rtts.append(time.perf_counter() - t0)
        w.close()
        return rtts

    rtts = asyncio.run(_with_relay(LinkSpec(up=DirectionSpec(delay_ms=15), down=DirectionSpec(delay_ms=10)), body))
    med = statistics.median(rtts) * 1000
    assert 25.0 <= med <= 27.5, med


def test_relay_limits_bandwidth_by_queueing() -> None:
    payload = b"x" * 250_000  # 2 Mbit at 20 Mbps up = 100 ms

    async def body(relay: LinkRelay) -> float:
        r, w = await asyncio.open_connection("127.0.0.1", relay.port)
        t0 = time.perf_counter()
        w.write(payload)
        await w.drain()
        await r.readexactly(len(payload))
        dt = time.perf_counter() - t0
        w.close()
        assert relay.counters.bytes_up == len(payload)
        return dt

    dt = asyncio.run(_with_relay(LinkSpec(up=DirectionSpec(mbps=20), down=DirectionSpec()), body))
    assert 0.095 <= dt <= 0.125, dt


def test_relay_reset_outage_cuts_connections() -> None:
    async def body(relay: LinkRelay) -> bool:
        r, w = await asyncio.open_connection("127.0.0.1", relay.port)
        w.write(b"a")
        await w.drain()
        await r.readexactly(1)
        await asyncio.sleep(0.35)  # the outage starts at 0.3 s
        try:
            w.write(b"b")
            await w.drain()
            data = await asyncio.wait_for(r.read(1), 1.0)
            cut = data == b""
        except (ConnectionError, asyncio.IncompleteReadError):
            cut = True
        w.close()
        return cut

    spec = LinkSpec(outages=(Outage(0.3, 1.0),), outage_mode="reset")
    assert asyncio.run(_with_relay(spec, body))


def test_testbed_stops_every_process_it_started(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Even if the caller's own cleanup failed, Testbed.stop() ends every child."""
    from clients.bench.testbed import Process, Testbed

    bed = Testbed(tmp_path, None, None, 1)
    procs = [Process(["-c", "import time; time.sleep(60)"], tmp_path / f"p{i}.log", None) for i in range(2)]
    for p in procs:
        bed.track(p)
    procs[0].stop()  # one already stopped by the caller
    bed.stop()
    assert all(p.proc.poll() is not None for p in procs)
