"""The one rule edge and verifier share on which drafts a verifier can check."""

from verifier.core.protocol import GrammarParams, SamplingParams, unverifiable, whole_rows_reasons

FULL = {"verifies_sampled": True, "rows_are_logits": True}
GREEDY_ONLY = {"verifies_sampled": False, "rows_are_logits": True}
LOGPROB_ROWS = {"verifies_sampled": True, "rows_are_logits": False}


def test_plain_greedy_needs_no_whole_rows_and_every_verifier_checks_it() -> None:
    greedy = SamplingParams(temperature=0)
    assert whole_rows_reasons(greedy, None, None) == []
    for rows in (FULL, GREEDY_ONLY, LOGPROB_ROWS):
        assert unverifiable(greedy, None, None, **rows) is None


def test_a_greedy_only_verifier_refuses_each_whole_row_need_with_its_code() -> None:
    sampled = SamplingParams(temperature=0.7)
    refused = unverifiable(sampled, None, None, **GREEDY_ONLY)
    assert refused is not None and (refused.param, refused.code) == ("temperature", "unsupported_sampling")
    assert "temperature 0.7" in refused.why
    grammar = GrammarParams(kind="json_schema", text="{}", stop_token_ids=[2])
    refused = unverifiable(SamplingParams(temperature=0), None, grammar, **GREEDY_ONLY)
    assert refused is not None and (refused.param, refused.code) == (None, "unsupported_grammar")
    refused = unverifiable(SamplingParams(temperature=0), 3, None, **GREEDY_ONLY)
    assert refused is not None and refused.code == "unsupported_sampling" and "logprobs" in refused.why
    assert unverifiable(sampled, 3, grammar, **FULL) is None


def test_repetition_penalty_needs_logit_rows_even_when_greedy() -> None:
    penalised = SamplingParams(temperature=0, repetition_penalty=1.2)
    refused = unverifiable(penalised, None, None, **LOGPROB_ROWS)
    assert refused is not None and (refused.param, refused.code) == ("repetition_penalty", "unsupported_sampling")
    assert unverifiable(penalised, None, None, **FULL) is None
    assert unverifiable(SamplingParams(temperature=0, repetition_penalty=1.0), None, None, **LOGPROB_ROWS) is None


def test_reasons_worked_out_by_the_caller_give_the_same_answer() -> None:
    grammar = GrammarParams(kind="json_schema", text="{}", stop_token_ids=[2])
    for sampling, logprobs, grammar_or_none in [(SamplingParams(temperature=0), None, None),
                                                (SamplingParams(temperature=0.7), None, None),
                                                (SamplingParams(temperature=0), 3, grammar),
                                                (SamplingParams(temperature=0, repetition_penalty=1.2), None, None)]:
        reasons = whole_rows_reasons(sampling, logprobs, grammar_or_none)
        for rows in (FULL, GREEDY_ONLY, LOGPROB_ROWS):
            assert unverifiable(sampling, logprobs, grammar_or_none, **rows, reasons=reasons) \
                == unverifiable(sampling, logprobs, grammar_or_none, **rows)


def test_only_output_counting_penalties_and_grammars_stop_a_backend_continuing_output() -> None:
    from verifier.core.protocol import continuation_refusal

    assert continuation_refusal(SamplingParams(), None) is None
    assert continuation_refusal(SamplingParams(repetition_penalty=1.3, min_tokens=4), None) is None
    assert "penalties" in (continuation_refusal(SamplingParams(frequency_penalty=0.5), None) or "")
    assert "penalties" in (continuation_refusal(SamplingParams(presence_penalty=0.5), None) or "")
    grammar = GrammarParams(kind="regex", text="[a-z]+", stop_token_ids=[0])
    assert "grammar" in (continuation_refusal(SamplingParams(), grammar) or "")
