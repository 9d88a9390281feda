"""``python -m clients.bench.features`` without servers: the rotation of the cases over (prompt,
repeat), the per-repeat figures and their spread (ratios taken repeat by repeat) on hand-made
results, a refused set, the table, the raw results and the reproducing command."""

from __future__ import annotations

import json
import shlex
from collections import Counter

import pytest

from clients.bench import features
from clients.bench.features import Case, Request, plan, repeat_stats, summarise, table


def req(prompt: int, repeat: int, feature: str, accepted: int | None, drafted: int | None, tok_s: float | None,
        mode: str = "speculative", draft: str = "d") -> Request:
    return Request(prompt, repeat, feature, draft, mode, accepted, drafted, None if tok_s is None else 64, tok_s)


def test_plan_balances_the_cases_from_one_prompt_and_repeat_to_the_next() -> None:
    runs = plan(2, 3, ["a", "b", "c"])
    # each repeat one pass over the prompts, in run order
    assert [(r, p) for r, p, _ in runs] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert [order for _, _, order in runs] == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"],
                                               ["c", "b", "a"], ["a", "c", "b"], ["b", "a", "c"]]
    assert Counter((x, y) for _, _, o in runs for x, y in zip(o, o[1:])) == Counter(
        {(x, y): 2 for x in "abc" for y in "abc" if x != y})  # each case right after each other one, alike
    assert Counter(order[0] for _, _, order in runs) == {"a": 2, "b": 2, "c": 2}  # each goes first alike
    assert all(sorted(order) == ["a", "b", "c"] for _, _, order in runs)  # every case, once


def test_plan_repeats_of_a_prompt_need_not_share_an_order() -> None:
    runs = plan(12, 3, [Case(f, "d", "speculative") for f in features.FEATURES])
    by_prompt = {p: {tuple(o) for r, q, o in runs if q == p} for p in range(12)}
    assert all(len(orders) == 3 for orders in by_prompt.values())


def test_repeat_stats_by_hand() -> None:
    s = repeat_stats([req(0, 0, "plain", 3, 4, 10.0), req(1, 0, "plain", 1, 6, 20.0), req(2, 0, "plain", 0, 0, 30.0)])
    assert s.acceptance == pytest.approx(4 / 10)  # summed over the requests, not a mean of rates
    assert s.median_acceptance == pytest.approx(1 / 6)  # of 0.75, 1/6 and 0 (nothing drafted)
    assert s.tok_s == 20.0


def hand_made(draft: str = "d") -> list[Request]:
    """Two prompts, three repeats; json_object accepts twice plain's rate and runs at half its speed
    every repeat though the repeats drift; penalties is refused in one request."""
    out = []
    for rep, speed in enumerate([10.0, 20.0, 40.0]):
        for p in range(2):
            refused = (p, rep) == (1, 2)
            out += [req(p, rep, "plain", 2, 8, speed, draft=draft),
                    req(p, rep, "json_object", 4, 8, speed / 2, draft=draft),
                    req(p, rep, "penalties", None if refused else 1, None if refused else 8, None if refused else speed,
                        draft=draft)]
    return out


def test_summary_spreads_and_ratios_repeat_by_repeat() -> None:
    rows = {r.feature: r for r in summarise(hand_made(), ["d"], ["speculative"], ["plain", "json_object", "penalties"],
                                            3)}
    plain, jo = rows["plain"], rows["json_object"]
    assert plain.tok_s is not None and plain.tok_s.values == (10.0, 20.0, 40.0)
    assert plain.tok_s.cell(1) == "20.0 [10.0-40.0]"
    assert jo.acceptance is not None and jo.acceptance.cell(3) == "0.500 [0.500-0.500]"
    assert jo.acceptance_x_plain is not None and jo.acceptance_x_plain.values == (2.0, 2.0, 2.0)
    assert jo.tok_s_x_plain is not None and jo.tok_s_x_plain.values == (0.5, 0.5, 0.5)  # drift cancels per repeat
    assert jo.tok_s_x_first_mode is not None and jo.tok_s_x_first_mode.values == (1.0, 1.0, 1.0)
    assert plain.tok_s_x_plain is not None and plain.tok_s_x_plain.cell() == "1.00 [1.00-1.00]"
    assert rows["penalties"].refused and rows["penalties"].tok_s is None
    assert rows["penalties"].as_dict()["refused"] is True and jo.as_dict()["tok_s"]["median"] == 10.0


def test_ratio_to_the_first_mode_is_taken_per_repeat() -> None:
    results = [req(0, rep, "plain", 1, 2, speed, mode="speculative") for rep, speed in enumerate([10.0, 30.0])]
    results += [req(0, rep, "plain", 0, 0, speed, mode="cloud") for rep, speed in enumerate([20.0, 15.0])]
    rows = summarise(results, ["d"], ["speculative", "cloud"], ["plain"], 2)
    cloud = rows[1]
    assert (cloud.mode, cloud.acceptance and cloud.acceptance.values) == ("cloud", (0.0, 0.0))
    assert cloud.tok_s_x_first_mode is not None and cloud.tok_s_x_first_mode.values == (2.0, 0.5)
    assert cloud.tok_s_x_first_mode.median == 1.25  # the median of the ratios, not 17.5 / 20
    assert cloud.acceptance_x_plain is not None and cloud.acceptance_x_plain.values == ()  # plain drafted nothing


def test_refused_plain_leaves_the_ratios_out() -> None:
    results = [req(0, 0, "plain", None, None, None), req(0, 0, "sampled", 1, 4, 5.0)]
    rows = summarise(results, ["d"], ["speculative"], ["plain", "sampled"], 1)
    assert rows[0].refused and rows[1].tok_s_x_plain is None and rows[1].acceptance_x_plain is None
    md = table(rows, "speculative")
    assert "| d | speculative | plain | refused (400) |" in md
    assert "| d | speculative | sampled | 0.250 | 0.250 | - | 5.0 | - | 1.00 |" in md


def test_table_cells_are_median_and_range() -> None:
    rows = summarise(hand_made("models/v6.gguf"), ["models/v6.gguf"], ["speculative"], ["plain", "json_object"], 3)
    md = table(rows, "speculative").splitlines()
    assert md[0].startswith("| draft | mode | feature set |") and md[0].endswith("| x speculative |")
    assert md[3] == ("| v6.gguf | speculative | json_object | 0.500 [0.500-0.500] | 0.500 [0.500-0.500] "
                     "| 2.00 [2.00-2.00] | 10.0 [5.0-20.0] | 0.50 [0.50-0.50] | 1.00 [1.00-1.00] |")


def test_raw_requests_and_command() -> None:
    refused = req(1, 2, "penalties", None, None, None).as_dict()
    assert refused == {"prompt": 1, "repeat": 2, "feature": "penalties", "draft": "d", "mode": "speculative",
                       "accepted": None, "drafted": None, "tokens": None, "tok_s": None, "refused": True}
    assert json.loads(json.dumps(req(0, 0, "plain", 2, 8, 10.0).as_dict()))["refused"] is False
    args = features.parse(["--limit", "4", "--drafts", "a b.gguf", "c.gguf", "--modes", "cloud", "speculative"])
    assert args.repeats == 3 and str(args.out) == "bench-results/features"
    command = features.reproduce(args)
    assert features.parse(shlex.split(command)[3:]) == args
    assert "--repeats 3" in command and "'a b.gguf' c.gguf" in command
