"""The run order of ``tandem-bench --repeats``: every (prompt, repeat) runs every mode once, in a
carry-over balanced order, so that each mode goes first somewhere and follows more than one other mode."""

from __future__ import annotations

import pytest

from clients.bench.cli import parse, schedule
from clients.bench.measure import MODES, Mode

NAMES = ["cloud", "vllm-serve", "tandem", "tandem-pipelined", "tandem-alt", "vanilla"]


def modes(n: int) -> list[Mode]:
    return [MODES[m] for m in NAMES[:n]]


@pytest.mark.parametrize(("n_modes", "prompts", "repeats"), [(5, 3, 3), (4, 2, 3), (2, 1, 3), (6, 4, 3), (3, 5, 1)])
def test_every_mode_goes_first_and_follows_more_than_one_mode(n_modes: int, prompts: int, repeats: int) -> None:
    ms = modes(n_modes)
    runs = schedule(prompts, repeats, ms)
    assert [(r, p) for r, p, _ in runs] == [(r, p) for r in range(repeats) for p in range(prompts)]  # repeat by repeat
    assert all(sorted(m.name for m in order) == sorted(NAMES[:n_modes]) for _, _, order in runs)
    assert {order[0].name for _, _, order in runs} == set(NAMES[:n_modes])
    for m in ms:  # None: it went first
        predecessors = {order[order.index(m) - 1].name if order.index(m) else None for _, _, order in runs}
        assert len(predecessors) >= 2, (m.name, predecessors)


def test_the_repeats_of_one_prompt_run_the_modes_in_different_orders() -> None:
    runs = schedule(4, 3, modes(5))
    for prompt in range(4):
        orders = [tuple(m.name for m in order) for _, p, order in runs if p == prompt]
        assert len(set(orders)) == 3, (prompt, orders)


def test_repeats_and_baseline_defaults() -> None:
    assert parse([]).repeats == 3 and parse(["--quick"]).repeats == 1
    assert parse(["--quick", "--repeats", "5"]).repeats == 5
    assert parse(["--modes", "cloud,tandem"]).baseline == "cloud"
    assert parse(["--modes", "cloud,tandem,vllm-serve"]).baseline == "vllm-serve"
    assert parse(["--modes", "cloud,tandem", "--baseline", "tandem"]).baseline == "tandem"
    with pytest.raises(SystemExit):
        parse(["--baseline", "nope"])
    with pytest.raises(SystemExit):
        parse(["--repeats", "0"])
