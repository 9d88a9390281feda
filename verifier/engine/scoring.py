"""Prompt scoring: the target's raw logprobs of a prompt's tokens."""

from __future__ import annotations

from verifier.backends.base import TargetBackend
from verifier.core.logprobs import token_logprobs
from verifier.core.protocol import PromptLogprobs, PromptLogprobsRequest, SamplingParams, TokenLogprobs
from verifier.engine.jobs import JobResult, Jobs
from verifier.engine.state import EngineError, HeldSequence, LatencyTargets, SchedulingConfig
from verifier.engine.validation import check_request


class PromptScoring:
    """Scores prompts as prefill jobs that ask for every row; a prompt is a held sequence of its
    own, released when scored."""

    def __init__(self, backend: TargetBackend, jobs: Jobs, config: SchedulingConfig) -> None:
        self._backend = backend
        self._jobs = jobs
        self._config = config

    async def prompt_logprobs(self, req: PromptLogprobsRequest) -> PromptLogprobs:
        """The target's raw logprobs of every prompt token after the first, scored in chunks (one
        job each, ``prefill_chunk`` rows at most: a chunk's rows are its logits)."""
        check_request(self._backend.info, req.protocol_version, req.prompt_token_ids, SamplingParams())
        if not self._backend.info.verifies_sampled:
            raise EngineError(400, f"the {self._backend.info.backend} backend's rows hold their top entries only: "
                              "no logprobs of given tokens", "unsupported_sampling")
        tokens = req.prompt_token_ids
        prompt = HeldSequence(state=self._backend.new_state(), slo=LatencyTargets.of(None, self._config))
        out: list[TokenLogprobs] = []
        compute_s = 0.0

        def scored(start: int, result: JobResult) -> None:
            nonlocal compute_s
            compute_s += result.compute_s
            tokens_scored = tokens[start + 1:start + 1 + result.logits.shape[0]]  # row j predicts token j + 1
            out.extend(TokenLogprobs.of(t) for t in token_logprobs(result.logits, tokens_scored, req.top_logprobs))

        try:
            await self._jobs.prefill(prompt, tokens[:-1], scored)
        finally:
            self._jobs.release_when_idle(prompt)
        return PromptLogprobs(logprobs=out, compute_ms=compute_s * 1000)
