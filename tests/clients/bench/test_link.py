"""The link model (pure) and the TCP relay (real sockets on loopback): delay, rate, outages."""

from __future__ import annotations

import asyncio
import statistics
from time import monotonic

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
# The relay's clock and sleep are injected: the tests read the delays it decides off a fake clock
# (exact numbers, nothing waited out); one test checks that on the real clock it waits at least those.
class SteppedTime:
    """Time that moves only when the test advances it; a sleeper wakes once it has passed its time."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._arrived = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, wake))
        self._arrived.set()
        await wake

    async def next_wake(self) -> float:
        """When the earliest sleeper wakes, once one sleeps (the bound only ends a hang)."""
        while not self._sleepers:
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), 10)
        return min(at for at, _ in self._sleepers)

    def advance(self, to: float) -> None:
        self.now = to
        due = [wake for at, wake in self._sleepers if at <= to]
        self._sleepers = [(at, wake) for at, wake in self._sleepers if at > to]
        for wake in due:
            if not wake.done():
                wake.set_result(None)


class InstantTime:
    """Every wait returns at once and moves the clock on by its length (right for one waiter at a time)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


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


async def _with_relay(spec: LinkSpec, body, fake: SteppedTime | InstantTime | None = None):  # type: ignore[no-untyped-def]
    echo = await _echo_server()
    timing = {} if fake is None else {"clock": fake.clock, "sleep": fake.sleep}
    relay = LinkRelay(spec, "127.0.0.1", echo.sockets[0].getsockname()[1], **timing)  # type: ignore[arg-type]
    await relay.start()
    try:
        return await body(relay)
    finally:
        await relay.stop()
        echo.close()
        await echo.wait_closed()


async def _cut(reader: asyncio.StreamReader) -> bool:
    """Whether the connection was cut: the next read ends it (the bound only ends a hang)."""
    try:
        return await asyncio.wait_for(reader.read(1), 10) == b""
    except (ConnectionError, asyncio.IncompleteReadError):
        return True


def test_relay_delays_each_direction_by_its_own_delay() -> None:
    """Ping-pong: the up chunk is held 15 ms, the echo 10 ms after it arrived; each round trip 25 ms."""
    fake = SteppedTime()

    async def body(relay: LinkRelay) -> list[tuple[float, float]]:
        r, w = await asyncio.open_connection("127.0.0.1", relay.port)
        trips = []
        for _ in range(5):
            sent = fake.now
            w.write(b"ping")
            await w.drain()
            up = await fake.next_wake()
            fake.advance(up)
            down = await fake.next_wake()
            fake.advance(down)
            assert await r.readexactly(4) == b"ping"
            trips.append((up - sent, down - up))
        w.close()
        assert relay.counters.bytes_up == relay.counters.bytes_down == 5 * 4
        return trips

    spec = LinkSpec(up=DirectionSpec(delay_ms=15), down=DirectionSpec(delay_ms=10))
    trips = asyncio.run(_with_relay(spec, body, fake))
    assert trips == [(pytest.approx(0.015), pytest.approx(0.010))] * 5
    assert fake.now == pytest.approx(5 * 0.025)


def test_relay_on_the_real_clock_waits_at_least_its_delays() -> None:
    """The default clock and sleep: a round trip never returns before the 25 ms the link decided
    (a lower bound only: a busy machine may take longer, never shorter)."""

    async def body(relay: LinkRelay) -> float:
        r, w = await asyncio.open_connection("127.0.0.1", relay.port)
        t0 = monotonic()
        w.write(b"ping")
        await w.drain()
        await r.readexactly(4)
        trip = monotonic() - t0
        w.close()
        return trip

    spec = LinkSpec(up=DirectionSpec(delay_ms=15), down=DirectionSpec(delay_ms=10))
    assert asyncio.run(_with_relay(spec, body)) >= 0.025 - 1e-3


def test_relay_limits_bandwidth_by_queueing() -> None:
    """250 kB at 20 Mbps up (2.5 MB/s): the chunks are serialised one after another, the last one
    delivered at exactly 100 ms on the link's clock; the way down (unlimited) adds no wait."""
    payload = b"x" * 250_000
    fake = InstantTime()

    async def body(relay: LinkRelay) -> float:
        r, w = await asyncio.open_connection("127.0.0.1", relay.port)
        t0 = fake.now
        w.write(payload)
        await w.drain()
        assert await r.readexactly(len(payload)) == payload
        dt = fake.now - t0
        w.close()
        assert relay.counters.bytes_up == relay.counters.bytes_down == len(payload)
        return dt

    dt = asyncio.run(_with_relay(LinkSpec(up=DirectionSpec(mbps=20), down=DirectionSpec()), body, fake))
    assert dt == pytest.approx(0.1)
    assert sum(fake.waits) == pytest.approx(0.1)
    assert len(fake.waits) >= -(-len(payload) // 16384) and all(w > 0 for w in fake.waits)  # one per chunk read


def test_relay_reset_outage_cuts_connections() -> None:
    """Outage from 0.3 s to 1.3 s, mode reset: the open connection is cut when it begins, one
    opened during it is refused, one opened after it is relayed."""
    fake = SteppedTime()

    async def body(relay: LinkRelay) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", relay.port)
        w.write(b"a")
        await w.drain()
        assert await r.readexactly(1) == b"a"
        assert await fake.next_wake() == pytest.approx(0.3)  # the relay waits for the outage to begin
        fake.advance(0.35)
        assert await _cut(r)
        w.close()
        r2, w2 = await asyncio.open_connection("127.0.0.1", relay.port)
        assert await _cut(r2)  # refused while the link is down
        w2.close()
        fake.advance(1.35)
        r3, w3 = await asyncio.open_connection("127.0.0.1", relay.port)
        w3.write(b"c")
        await w3.drain()
        assert await r3.readexactly(1) == b"c"
        w3.close()
        assert relay.counters.connections == 2

    asyncio.run(_with_relay(LinkSpec(outages=(Outage(0.3, 1.0),), outage_mode="reset"), body, fake))


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
