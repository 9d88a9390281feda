"""One verify round by hand over the verifier channel, stop-and-wait: how the load generator's
replayed edges, the smoke check and tests drive the verifier without an edge's decoding loop
(the edge's own loops are ``proxy.decoding``)."""

from __future__ import annotations

from proxy.cloud.channel import ChannelSession
from proxy.decoding.speculation import Applied, SpeculationState
from verifier.core.codec import DraftToken


async def stop_and_wait_round(session: ChannelSession, state: SpeculationState, drafts: list[DraftToken]) -> Applied:
    """``drafts`` (possibly none) sent as one round, its answer waited for and applied."""
    for token in drafts:
        state.add_draft(token)
    sent = state.take_round(allow_empty=True)
    if sent is None:
        raise ValueError("a round needs drafts or a verified prefix to extend")
    await session.send(sent)
    return state.apply(await session.next())
