"""A figure across repeats by hand: median, quartiles, range, and ratios taken repeat by repeat."""

from __future__ import annotations

import pytest

from clients.bench.spread import ratios, spread


def test_median_iqr_and_range_by_hand() -> None:
    s = spread([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (s.median, s.q1, s.q3, s.iqr, s.min, s.max) == (3.0, 2.0, 4.0, 2.0, 1.0, 5.0)
    assert s.values == (3.0, 1.0, 2.0, 5.0, 4.0)  # kept in repeat order
    s = spread([10.0, 40.0, 20.0])  # quartiles interpolated between the ordered values
    assert (s.median, s.q1, s.q3, s.iqr, s.min, s.max) == (20.0, 15.0, 30.0, 15.0, 10.0, 40.0)
    s = spread([1.0, 2.0, 3.0, 4.0])
    assert (s.median, s.q1, s.q3) == (2.5, 1.75, 3.25)


def test_one_repeat_and_none() -> None:
    one = spread([7.0])
    assert (one.median, one.q1, one.q3, one.iqr, one.min, one.max) == (7.0, 7.0, 7.0, 0.0, 7.0, 7.0)
    assert one.cell() == "7.00"
    assert spread([]).cell() == "-" and spread([]).median == 0.0


def test_cells_and_dicts() -> None:
    s = spread([2.0, 1.0, 4.0])
    assert s.cell() == "2.00 [1.00-4.00]" and s.cell(1) == "2.0 [1.0-4.0]"
    assert s.as_dict() == {"median": 2.0, "q1": 1.5, "q3": 3.0, "iqr": 1.5, "min": 1.0, "max": 4.0,
                           "values": [2.0, 1.0, 4.0]}


def test_ratios_are_taken_repeat_by_repeat() -> None:
    # a mode twice as fast as the baseline in every repeat, though the repeats drift: the ratio holds
    assert ratios([20.0, 10.0, 40.0], [10.0, 5.0, 20.0]) == [2.0, 2.0, 2.0]
    assert spread(ratios([20.0, 10.0, 40.0], [10.0, 5.0, 20.0])).iqr == 0.0
    # (a ratio of medians, 20 / 10, happens to agree here; per repeat, a drifting baseline would not hide)
    assert ratios([3.0, 3.0], [1.0, 0.0]) == [3.0]  # a repeat whose baseline made nothing is left out
    with pytest.raises(ValueError):
        ratios([1.0], [1.0, 2.0])


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_balanced_orders_put_each_item_first_and_after_each_other_item_equally_often(n: int) -> None:
    from collections import Counter

    from clients.bench.spread import balanced

    items = list(range(n))
    period = n if n % 2 == 0 else 2 * n
    orders = [balanced(items, t) for t in range(period)]
    assert all(sorted(o) == items for o in orders)
    firsts = Counter(o[0] for o in orders)
    pairs = Counter((a, b) for o in orders for a, b in zip(o, o[1:]))
    assert set(firsts.values()) == {period // n} and len(firsts) == n
    assert len(pairs) == n * (n - 1) and set(pairs.values()) == {period // n}  # every ordered pair, alike
    assert balanced(items, period) == orders[0]  # then it starts over


def test_a_rotation_is_not_balanced_which_is_why_balanced_exists() -> None:
    from collections import Counter

    from clients.bench.spread import rotated

    pairs = Counter((a, b) for t in range(4) for o in [rotated([0, 1, 2, 3], t)] for a, b in zip(o, o[1:]))
    assert pairs[(0, 1)] == 3 and pairs[(1, 0)] == 0  # 0 always precedes 1: what a carry-over effect would hit
