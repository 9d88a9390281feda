"""Cloud-only decoding on vLLM, its own (``VllmBackend.decode``): a generation's parameters as
vLLM's, and the logprobs vLLM reports as Tandem's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from verifier.core.grammar import GrammarSpec
from verifier.core.logprobs import TokenLogprob
from verifier.core.protocol import GenerateRequest, continuation_refusal


def decode_params(params_type: Any, output_kind: Any, req: GenerateRequest) -> Any:
    """vLLM's ``params_type`` (its ``SamplingParams``) for ``req``, whose output begins at
    ``req.output_index()``; ValueError where vLLM cannot continue it exactly."""
    sampling, grammar = req.sampling, req.grammar
    produced = len(req.prompt_token_ids) - req.output_index()  # output tokens vLLM will see as prompt
    if produced and (why := continuation_refusal(sampling, grammar)) is not None:
        raise ValueError(f"vLLM cannot continue this generation after some output exactly: {why}")
    return params_type(
        max_tokens=req.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
        top_k=sampling.top_k or -1, min_p=sampling.min_p,
        presence_penalty=sampling.presence_penalty, frequency_penalty=sampling.frequency_penalty,
        repetition_penalty=sampling.repetition_penalty, logit_bias=dict(sampling.logit_bias) or None,
        min_tokens=max(0, sampling.min_tokens - produced),
        seed=sampling.seed if sampling.temperature > 0 else None, stop_token_ids=list(req.stop_token_ids),
        detokenize=False, output_kind=output_kind, logprobs=req.logprobs,
        structured_outputs=structured(grammar.spec()) if grammar is not None else None,
    )


def structured(grammar: GrammarSpec) -> Any:
    """A grammar as vLLM's structured-output parameters (llguidance behind them, as configured)."""
    from vllm.sampling_params import StructuredOutputsParams

    if grammar.kind == "json_schema":
        return StructuredOutputsParams(json=grammar.text)
    if grammar.kind == "regex":
        return StructuredOutputsParams(regex=grammar.text)
    return StructuredOutputsParams(grammar=grammar.text)


def vllm_logprobs(token_ids: Sequence[int], positions: Sequence[Mapping[int, Any]] | None,
                  top_n: int) -> list[TokenLogprob]:
    """vLLM's sample logprobs (per position: token id -> ``Logprob(logprob, rank)``, the top
    ``top_n`` by rank plus the sampled token) as ``TokenLogprob`` entries."""
    if positions is None or len(positions) != len(token_ids):
        raise RuntimeError("vLLM returned no logprobs for the tokens it generated")
    out = []
    for token, entries in zip(token_ids, positions):
        ranked = sorted((e.rank, i, e.logprob) for i, e in entries.items() if e.rank is not None and e.rank <= top_n)
        out.append(TokenLogprob(token, float(entries[token].logprob), tuple((i, float(lp)) for _, i, lp in ranked)))
    return out
