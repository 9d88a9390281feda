"""OpenAI Predicted Outputs as drafts: the text a client expects the answer to repeat.

A prediction costs nothing to draft, and the verifier checks it like any draft, so the output
stays the target's own (greedy: identical; sampled: a prediction token is a one-hot proposal,
which rejection sampling accepts with the target's p(d), exact for any proposal).

``PredictionAligner`` (pure) says where the output stands in the prediction: it follows the
prediction token by token while the output does, and after a divergence finds where the output
rejoins it, as prompt-lookup drafting does: the longest suffix n-gram of the output (down to
``min_ngram`` tokens) that occurs in the prediction, the first occurrence at or after where the
output last stood (an edit moves forward), else the last one before. Where no n-gram is found
yet, a small edit is assumed where the output had just repeated ``edit_after`` of the
prediction's tokens (or all of it so far): its last few tokens (up to ``max_edit``) replaced,
inserted or deleted a few of the prediction's right there, and the prediction goes on after
them (an edit of a digit or a word is answered in the next round, not after an n-gram of the
prediction has come back). ``PredictionDrafter`` proposes the prediction's next token there and
leaves every other position to the edge's own drafter.
"""

from __future__ import annotations

import difflib
import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from proxy.draft.base import Drafter
from proxy.draft.draws import DraftSampling
from proxy.rounds.trigger import DraftTrigger
from verifier.core.codec import DraftToken
from verifier.core.sampling import SparseDist


class PredictionAligner:
    """The prediction's index of the output's next token, or None where the output is not in it."""

    def __init__(self, prediction: Sequence[int], max_ngram: int = 8, min_ngram: int = 2, max_edit: int = 3,
                 edit_after: int = 4) -> None:
        if min_ngram < 1 or max_ngram < min_ngram or max_edit < 0 or edit_after < 1:
            raise ValueError("need 1 <= min_ngram <= max_ngram, max_edit >= 0 and edit_after >= 1")
        self.prediction = list(prediction)
        self._max, self._min, self._edit, self._edit_after = max_ngram, min_ngram, max_edit, edit_after
        self._where: dict[int, list[int]] = defaultdict(list)  # token -> its indices in the prediction
        for i, token in enumerate(self.prediction):
            self._where[token].append(i)
        # every run of ``edit_after`` tokens the prediction holds
        self._runs = {tuple(self.prediction[i:i + edit_after]) for i in range(len(self.prediction) - edit_after + 1)}
        self._known: tuple[int, int, int | None] | None = None  # (output length, its last token, next index)
        self._last = 0  # where the output last stood in the prediction

    def next_index(self, output: Sequence[int]) -> int | None:
        """The index in the prediction of the token that follows ``output`` (None: nowhere)."""
        size = len(output)
        if size == 0:
            found: int | None = 0
        elif self._known is not None and self._known[0] == size - 1 and self._known[2] is not None \
                and self._known[2] < len(self.prediction) and self.prediction[self._known[2]] == output[-1] \
                and (size < 2 or self._known[1] == output[-2]):
            found = self._known[2] + 1  # the output went on with the prediction
        else:
            found = self._rejoin(output)
            if found is None:
                found = self._after_edit(output)
        self._known = (size, output[-1] if size else -1, found)
        if found is not None:
            self._last = found
        return found if found is not None and found < len(self.prediction) else None

    def stood_in(self, output: Sequence[int], within: int) -> bool:
        """Whether one of the output's last ``within`` tokens ends a run of ``edit_after`` tokens
        that the prediction holds (wherever it holds it)."""
        n = self._edit_after
        return any(tuple(output[end - n:end]) in self._runs for end in range(max(n, len(output) - within + 1),
                                                                             len(output) + 1))

    def agreeing(self, output: Sequence[int], index: int, most: int) -> int:
        """How many of the output's last tokens (up to ``most``) are the prediction's just before ``index``."""
        n = 0
        while n < min(most, len(output), index) and output[-1 - n] == self.prediction[index - 1 - n]:
            n += 1
        return n

    def _after_edit(self, output: Sequence[int]) -> int | None:
        """Where the prediction goes on if the output's last ``j`` tokens (1 to ``max_edit``, the
        fewest first) are an edit at the place ``k`` where the output before them stood, its last
        ``edit_after`` tokens (or all of it) the prediction's: the token after the last of them,
        if it is one of the prediction's next ``j + 2`` (an insertion or a deletion), else ``k + j``
        (``j`` tokens replaced by as many). None where no such place is found: text that only
        shares a pair of tokens with the prediction here and there is not taken for an edit of it."""
        for j in range(1, min(self._edit, len(output)) + 1):
            before = output[:-j]
            k = self._rejoin(before) if before else 0
            if k is None or self.agreeing(before, k, self._edit_after) < min(self._edit_after, len(before)):
                continue
            window = self.prediction[k:k + j + 2]
            return k + window.index(output[-1]) + 1 if output[-1] in window else k + j
        return None

    def _rejoin(self, output: Sequence[int]) -> int | None:
        for n in range(min(self._max, len(output)), self._min - 1, -1):
            tail = list(output[-n:])
            ends = [i for i in self._where.get(tail[-1], ()) if i >= n - 1
                    and self.prediction[i - n + 1:i + 1] == tail]
            if not ends:
                continue
            after = [i for i in ends if i + 1 >= self._last]
            return (after[0] if after else ends[-1]) + 1
        return None


@dataclass(frozen=True)
class PredictionCounts:
    """OpenAI's usage for a prediction: its tokens that appeared in the completion (in order, as
    a diff finds them) and those that did not."""

    accepted: int
    rejected: int

    @classmethod
    def of(cls, prediction: Sequence[int], output: Sequence[int]) -> PredictionCounts:
        matcher = difflib.SequenceMatcher(None, list(prediction), list(output), autojunk=False)
        matched = sum(block.size for block in matcher.get_matching_blocks())
        return cls(matched, len(prediction) - matched)


def one_hot(token_id: int) -> SparseDist:
    return SparseDist(np.array([token_id], dtype=np.int64), np.array([1.0]))


class PredictionDrafter(Drafter):
    """The prediction's next token where the output stands in it, else ``inner``'s draft. When
    sampling, every token carries a proposal (a prediction's or an id-only draft's is one-hot),
    so a round may mix them."""

    def __init__(self, inner: Drafter, prediction: Sequence[int], output_start: int, lost_after: int = 16) -> None:
        self.inner = inner
        self.lost_after = lost_after
        self.standalone = inner.standalone
        self.aligner = PredictionAligner(prediction)
        self.output_start = output_start

    def begin(self) -> None:
        self.inner.begin()

    def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
        index = self.aligner.next_index(context[self.output_start:])
        if index is not None:
            token = self.aligner.prediction[index]
            return DraftToken(token, one_hot(token) if sampling.temperature > 0 else None, predicted=True)
        drafted = self.inner.draft(context, sampling)
        if drafted is not None and drafted.proposal is None and sampling.temperature > 0:
            return DraftToken(drafted.token_id, one_hot(drafted.token_id), drafted.features, drafted.confidence)
        return drafted

    def next_token(self, context: list[int], sampling: DraftSampling) -> int:
        return self.inner.next_token(context, sampling)

    def rejoined(self, context: Sequence[int], run: int) -> bool:
        """Whether the output (``context`` from the request's output start) stands in the
        prediction again, its last ``run`` tokens the prediction's and at least ``run`` of the
        prediction ahead: speculation on the prediction may pay again after cloud streaming."""
        output = context[self.output_start:]
        index = self.aligner.next_index(output)
        return index is not None and len(self.aligner.prediction) - index >= run \
            and self.aligner.agreeing(output, index, run) >= run

    def lost(self, context: Sequence[int]) -> bool:
        """Whether the output (``context`` from the request's output start, as verified) has left
        the prediction: it is ``lost_after`` tokens long or more, and none of its last
        ``lost_after`` tokens ends a run of the prediction (``PredictionAligner.stood_in``). Judged
        on the output, not on the drafts: text that shares a pair of tokens with the prediction
        here and there keeps finding places to draft from, yet has left it."""
        output = context[self.output_start:]
        return len(output) >= self.lost_after and not self.aligner.stood_in(output, self.lost_after)


@dataclass
class PredictionTrigger:
    """Where a round of a request with a prediction ends. Prediction tokens run on to
    ``trusted`` tokens a round, which doubles after a round whose prediction tokens were all
    accepted (up to ``longest``) and falls back to twice those accepted after a rejection (never
    below ``drafted_per_round``): a right prediction soon goes up in long rounds, a wrong one
    wastes short ones. The edge's own drafts keep their trigger (``inner``, over the round's own
    drafts since the last prediction token) and at most ``drafted_per_round`` of them; the first
    own draft after prediction tokens starts a round of its own (the prediction was just left:
    its tokens go up now)."""

    inner: DraftTrigger | None
    drafted_per_round: int
    longest: int
    trusted: int = 0  # prediction tokens a round may hold now (0: twice drafted_per_round)

    def __post_init__(self) -> None:
        self.trusted = self.trusted or min(self.longest, 2 * self.drafted_per_round)

    @property
    def needs_features(self) -> bool:
        return bool(self.inner and self.inner.needs_features)

    def ends_round_before(self, token: DraftToken, round_so_far: Sequence[DraftToken]) -> bool:
        if not round_so_far:
            return False
        if token.predicted:
            return sum(d.predicted for d in round_so_far) >= self.trusted
        if round_so_far[-1].predicted:
            return True
        own = list(itertools.takewhile(lambda d: not d.predicted, reversed(round_so_far)))[::-1]
        if len(own) >= self.drafted_per_round:
            return True
        return bool(self.inner and self.inner.ends_round_before(token, own))

    def learn(self, predicted: int, accepted: int) -> None:
        """A verified round held ``predicted`` prediction tokens, of which the first ``accepted`` were accepted."""
        if not predicted:
            return
        if accepted >= predicted:
            self.trusted = min(self.longest, 2 * self.trusted)
        else:
            self.trusted = max(self.drafted_per_round, min(self.longest, 2 * accepted))
