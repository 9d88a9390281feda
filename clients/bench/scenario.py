"""Scenario files (TOML): the link between edge and cloud, and the edge device's CPU."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.bench.link import DirectionSpec, Outage, RateStep
from clients.bench.relay import LinkSpec

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


@dataclass(frozen=True)
class EdgeDevice:
    """A slower edge emulated on this machine: pinned cores, llama.cpp threads, and a duty
    cycle (the process runs ``duty`` of every 20 ms, like a CPU clocked at duty x this one)."""

    cpus: tuple[int, ...] | None = None
    threads: int | None = None
    duty: float = 1.0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    link: LinkSpec
    edge: EdgeDevice

    @property
    def rtt_ms(self) -> float:
        return self.link.up.delay_ms + self.link.down.delay_ms


def _direction(d: dict[str, Any]) -> DirectionSpec:
    schedule = tuple(RateStep(float(s["at_s"]), float(s["mbps"])) for s in d.get("schedule", []))
    return DirectionSpec(delay_ms=float(d.get("delay_ms", 0.0)), jitter_ms=float(d.get("jitter_ms", 0.0)),
                         mbps=d.get("mbps"), schedule=schedule, period_s=d.get("period_s"),
                         loss=float(d.get("loss", 0.0)), rto_ms=float(d.get("rto_ms", 200.0)))


def load_scenario(ref: str | Path) -> Scenario:
    """A path to a TOML file, or the name of one in clients/scenarios/."""
    path = Path(ref)
    if not path.exists():
        path = SCENARIO_DIR / f"{ref}.toml"
    raw = tomllib.loads(path.read_text())
    link = raw.get("link", {})
    outages = tuple(Outage(float(o["start_s"]), float(o["duration_s"])) for o in link.get("outages", []))
    spec = LinkSpec(up=_direction(link.get("up", {})), down=_direction(link.get("down", {})), outages=outages,
                    outage_mode=link.get("outage_mode", "stall"), seed=int(link.get("seed", 0)))
    e = raw.get("edge", {})
    edge = EdgeDevice(cpus=tuple(e["cpus"]) if "cpus" in e else None, threads=e.get("threads"),
                      duty=float(e.get("duty", 1.0)))
    return Scenario(raw.get("name", path.stem), raw.get("description", ""), spec, edge)
