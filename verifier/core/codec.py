"""The round codec: draft tokens to a verify request on the edge, and back on the verifier.

Probabilities go out at full precision (JSON's float repr round-trips float64 exactly): the
verifier must see exactly the q each draft token was drawn from, or sampling is not exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from verifier.core.drafting import DraftToken
from verifier.core.protocol import Proposal, VerifyRequest
from verifier.core.sampling import SparseDist


def encode_round(round_: int, drafts: Sequence[DraftToken]) -> VerifyRequest:
    """The wire form of one round: ids, plus one proposal per draft token when sampling.

    Either every draft token carries its proposal or none does (id-only drafts)."""
    qs = [d.proposal for d in drafts if d.proposal is not None]
    if qs and len(qs) != len(drafts):
        raise ValueError("either every draft token of a round carries its proposal or none does")
    proposals = [Proposal(ids=q.ids.tolist(), probs=q.probs.tolist()) for q in qs] if qs else None
    return VerifyRequest(round=round_, draft_token_ids=[d.token_id for d in drafts], proposals=proposals)


def decode_proposals(req: VerifyRequest) -> list[SparseDist] | None:
    """The proposals of a round as distributions (validated by the caller against its vocabulary)."""
    if req.proposals is None:
        return None
    return [SparseDist(np.asarray(p.ids, dtype=np.int64), np.asarray(p.probs, dtype=np.float64))
            for p in req.proposals]
