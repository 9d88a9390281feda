"""tandem-draft end to end on tiny configurations (the full run is a documented command)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tests.conftest import ROOT
from verifier.core.bounds import mean_accepted_length
from verifier.core.gguf import load_llama
from verifier.core.models import default_target_dir, target_gguf_path
from verifier.distill.export import export_gguf
from verifier.distill.prompts import SEED_REQUESTS

pytestmark = pytest.mark.integration


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=256,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, rope_theta=10000.0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # non-trivial norms so a mix-up of tensors would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model.eval()


def test_export_round_trip_logits_match_torch(tmp_path: Path) -> None:
    model = tiny_llama()
    out = export_gguf(model.state_dict(), model.config.to_dict(), target_gguf_path(), tmp_path / "tiny.gguf",
                      name="tiny", weight_type="f32", embed_type="f32")
    tokens = [1, 9690, 198, 2683, 359, 253, 5356, 30]
    with torch.no_grad():
        ref = model(torch.tensor([tokens])).logits[0].numpy()
    llm = load_llama(out, n_ctx=64, threads=1, logits_all=True)
    llm.eval(tokens)
    got = np.asarray(llm.scores[: len(tokens)])
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 2e-2 * max(1.0, float(np.abs(ref).max()))
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.99


def test_quantised_export_still_agrees(tmp_path: Path) -> None:
    model = tiny_llama(1)
    out = export_gguf(model.state_dict(), model.config.to_dict(), target_gguf_path(), tmp_path / "q.gguf",
                      name="tiny", weight_type="q8_0", embed_type="q8_0")
    tokens = [1, 9690, 198, 2683, 359]
    with torch.no_grad():
        ref = model(torch.tensor([tokens])).logits[0].numpy()
    llm = load_llama(out, n_ctx=64, threads=1, logits_all=True)
    llm.eval(tokens)
    corr = np.corrcoef(np.asarray(llm.scores[: len(tokens)]).ravel(), ref.ravel())[0, 1]
    assert corr > 0.99


def test_short_distillation_end_to_end_then_eval(tmp_path: Path) -> None:
    out = tmp_path / "draft.gguf"
    cmd = [sys.executable, "-m", "verifier.distill.cli", "distill", "--target", str(default_target_dir()),
           "--out", str(out), "--layers", "1", "--hidden", "64", "--tokens", "48", "--gen-batch", "4",
           "--gen-len", "16", "--epochs", "1", "--weight-type", "f16", "--seed", "3", "--threads", "1"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)
    assert out.exists()
    work = out.with_suffix(".work")
    assert list((work / "data").glob("shard-*.pt")) and (work / "train" / "student-final.pt").exists()
    # resuming a finished run is a no-op that rewrites the same draft
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Name a fruit."}\nSay hello.\n')

    def evaluated(draft: Path) -> dict[str, float]:
        res = subprocess.run([sys.executable, "-m", "verifier.distill.cli", "eval", "--draft", str(draft),
                              "--prompts", str(prompts), "--max-new", "8", "--threads", "1", "--json"],
                             cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
        report: dict[str, float] = json.loads(res.stdout)
        return report

    # the constructed case, exact: the target as its own draft agrees with itself at every position
    # (both replies run past 8 tokens), and rounds of 4 then accept 4, then the last 3 of 8
    itself = evaluated(target_gguf_path())
    assert (itself["prompts"], itself["positions"], itself["greedy_acceptance"]) == (2, 16, 1.0)
    assert itself["mean_accepted_length_gamma4"] == mean_accepted_length([True] * 8, 4) == 3.5
    report = evaluated(out)
    # the same target continuations are scored, whatever the draft; the share is of those positions
    assert (report["prompts"], report["positions"]) == (2, 16)
    assert report["greedy_acceptance"] * 16 == pytest.approx(round(report["greedy_acceptance"] * 16), abs=1e-3)
    assert report["greedy_acceptance"] < 1.0 and report["draft_ms_per_token"] > 0  # a 48-token draft is no target


def test_quant_round_trip_is_what_the_export_stores(tmp_path: Path) -> None:
    from verifier.distill.export import quant_round_trip

    model = tiny_llama(2)
    w = model.model.embed_tokens.weight.detach().clone()
    seen = quant_round_trip(w, "q4_1")
    assert not torch.equal(seen, w) and torch.allclose(seen, w, atol=0.2)
    assert torch.allclose(quant_round_trip(seen, "q4_1"), seen, atol=1e-3)  # exporting it again changes nothing
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(seen)
    out = export_gguf(model.state_dict(), model.config.to_dict(), target_gguf_path(), tmp_path / "rt.gguf",
                      name="tiny", weight_type="f32", embed_type="q4_1")
    tokens = [1, 9690, 198, 2683]
    with torch.no_grad():
        ref = model(torch.tensor([tokens])).logits[0].numpy()
    llm = load_llama(out, n_ctx=64, threads=1, logits_all=True)
    llm.eval(tokens)
    assert np.abs(np.asarray(llm.scores[: len(tokens)]) - ref).max() < 2e-2 * max(1.0, float(np.abs(ref).max()))


def test_llama_cpp_data_writer_is_the_targets_greedy_text_and_reproducible(tmp_path: Path) -> None:
    from verifier.distill.data import DataConfig, shard_paths
    from verifier.distill.data_llama import generate_data_llama

    def run(out: Path) -> list[dict]:
        cfg = DataConfig(default_target_dir(), out, tokens=40, seed=5, batch_size=2, max_new_tokens=12,
                         temperatures=(0.8, 0.0))
        generate_data_llama(cfg, target_gguf_path(), workers=2, progress=False)
        return [torch.load(p, weights_only=True) for p in shard_paths(out)]

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert [s["temperature"] for s in a] == [0.8, 0.0] and sum(s["n_tokens"] for s in a) >= 40
    for sa, sb in zip(a, b, strict=True):
        for ra, rb in zip(sa["records"], sb["records"], strict=True):
            assert torch.equal(ra["reply"], rb["reply"]) and torch.equal(ra["top_ids"], rb["top_ids"])
            assert ra["top_ids"].shape == (ra["reply"].numel(), 16)
    greedy = a[1]["records"][0]
    assert torch.equal(greedy["reply"], greedy["top_ids"][:, 0])  # greedy: the reply is the target's argmax
    llm = load_llama(target_gguf_path(), n_ctx=256, threads=1)
    prompt = greedy["prompt"].tolist()
    expected = [int(t) for t, _ in zip(llm.generate(prompt, temp=0.0), range(greedy["reply"].numel()))]
    assert greedy["reply"].tolist() == expected


def test_self_instruct_shards_have_target_written_requests(tmp_path: Path) -> None:
    from verifier.distill.data import DataConfig, shard_paths
    from verifier.distill.data_llama import generate_data_llama

    def run(out: Path) -> list[dict]:
        cfg = DataConfig(default_target_dir(), out, tokens=20, seed=2, batch_size=3, max_new_tokens=8,
                         temperatures=(0.0,), prompt_source="self")
        generate_data_llama(cfg, target_gguf_path(), workers=1, progress=False)
        return [r for p in shard_paths(out) for r in torch.load(p, weights_only=True)["records"]]

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert len(a) >= 3
    assert all(torch.equal(x["prompt"], y["prompt"]) for x, y in zip(a, b, strict=True))  # seeded
    assert len({tuple(r["prompt"].tolist()) for r in a}) == len(a)  # every request is different
    llm = load_llama(target_gguf_path(), n_ctx=256, threads=1, vocab_only=True)
    text = llm.detokenize(a[0]["prompt"].tolist(), special=True).decode(errors="ignore")
    assert "<|im_start|>user" in text and len(text.split("<|im_start|>user")[1].split()) >= 4


def test_torch_decode_batch_is_the_targets_greedy_text_despite_padding() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verifier.distill.data_torch import decode_batch

    tok = AutoTokenizer.from_pretrained(default_target_dir())
    model = AutoModelForCausalLM.from_pretrained(default_target_dir(), dtype=torch.float32).eval()
    chats = [[{"role": "user", "content": "Name a fruit."}],
             [{"role": "system", "content": "You are a helpful assistant."},
              {"role": "user", "content": "Explain black holes to a child in two sentences."}],
             [{"role": "user", "content": "Say hi"}]]
    prompts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False) for c in chats]
    got = decode_batch(model, prompts, 0.0, torch.Generator().manual_seed(0), 20, 16, tok.eos_token_id,
                       tok.eos_token_id)
    lengths = set()
    for prompt, (reply, top_ids, top_vals) in zip(prompts, got, strict=True):
        with torch.no_grad():
            ref = model.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False)[0, len(prompt):]
        assert reply == ref.tolist()  # a reply that ended early (eos) left the batch without disturbing the rest
        assert top_ids.shape == top_vals.shape == (len(reply), 16)
        assert top_ids[:, 0].tolist() == reply and bool((top_vals[:, :-1] >= top_vals[:, 1:]).all())
        lengths.add(len(reply))
    assert len(lengths) > 1


def test_torch_writer_is_seeded_and_writes_self_instruct_and_list_shards(tmp_path: Path) -> None:
    from verifier.distill.data import DataConfig, shard_paths
    from verifier.distill.data_torch import generate_data_torch

    def run(out: Path, source: str) -> list[dict]:
        cfg = DataConfig(default_target_dir(), out, tokens=40, seed=4, batch_size=2, max_new_tokens=10,
                         temperatures=(0.8, 0.0), prompt_source=source)
        generate_data_torch(cfg, progress=False)
        return [torch.load(p, weights_only=True) for p in shard_paths(out)]

    a, b = run(tmp_path / "a", "templates"), run(tmp_path / "b", "templates")
    assert [s["temperature"] for s in a][:2] == [0.8, 0.0] and sum(s["n_tokens"] for s in a) >= 40
    for sa, sb in zip(a, b, strict=True):
        for ra, rb in zip(sa["records"], sb["records"], strict=True):
            assert torch.equal(ra["reply"], rb["reply"]) and torch.equal(ra["top_logits"], rb["top_logits"])
    greedy = a[1]["records"][0]
    assert torch.equal(greedy["reply"], greedy["top_ids"][:, 0])
    sampled = [r for r in a[0]["records"] if not torch.equal(r["reply"], r["top_ids"][:, 0])]
    assert sampled  # temperature 0.8 did not pick the argmax everywhere
    records = [r for s in run(tmp_path / "c", "self") for r in s["records"]]
    llm = load_llama(target_gguf_path(), n_ctx=256, threads=1, vocab_only=True)
    texts = [llm.detokenize(r["prompt"].tolist(), special=True).decode(errors="ignore") for r in records]
    asks = [t for t in texts if "Reply with the" in t]
    answers = [t for t in texts if "Reply with the" not in t]
    assert asks and len(answers) >= 2  # the request-writing conversations are kept as training text too
    requests = [t.split("<|im_start|>user")[1] for t in answers]
    assert len(set(requests)) == len(requests) and all(len(r.split()) >= 4 for r in requests)
    listed = [r for s in run(tmp_path / "d", "list") for r in s["records"]]
    texts = [llm.detokenize(r["prompt"].tolist(), special=True).decode(errors="ignore") for r in listed]
    lists = [t for t in texts if t.rstrip().endswith("4.")]  # the list-continuing conversations
    answers = [t.split("<|im_start|>user\n")[-1].split("<|im_end|>")[0] for t in texts if not t.rstrip().endswith("4.")]
    assert lists and len(answers) >= 2 and len(set(answers)) == len(answers)
    assert all(len(a.split()) >= 4 and a not in SEED_REQUESTS for a in answers)


def test_import_gguf_inverts_export(tmp_path: Path) -> None:
    from verifier.distill.export import import_gguf

    model = tiny_llama(4)
    exact = export_gguf(model.state_dict(), model.config.to_dict(), target_gguf_path(), tmp_path / "f32.gguf",
                        name="tiny", weight_type="f32", embed_type="f32")
    state = model.state_dict()
    back = import_gguf(exact)
    assert set(back) == {k for k in state if k != "lm_head.weight"}  # tied: the head is the embeddings
    for key, w in back.items():
        assert torch.equal(w, state[key]), key  # Q/K rows back in HF's rotary order
    quantised = import_gguf(export_gguf(model.state_dict(), model.config.to_dict(), target_gguf_path(),
                                        tmp_path / "q8.gguf", name="tiny", weight_type="q8_0", embed_type="q8_0"))
    for key, w in quantised.items():
        assert torch.allclose(w, state[key], atol=0.02 * float(state[key].abs().max())), key


def test_training_can_start_from_a_draft_gguf(tmp_path: Path) -> None:
    from verifier.distill.train import initial_weights

    donor, student = tiny_llama(5), tiny_llama(6)
    path = export_gguf(donor.state_dict(), donor.config.to_dict(), target_gguf_path(), tmp_path / "donor.gguf",
                       name="tiny", weight_type="f32", embed_type="f32")
    state = initial_weights(path, student)
    for key, w in state.items():
        # the layers and the final norm are the draft's; the (frozen, tied) embeddings stay the student's
        source = student if key in ("model.embed_tokens.weight", "lm_head.weight") else donor
        assert torch.equal(w, source.state_dict()[key]), key
    student.load_state_dict(state)
    other = LlamaForCausalLM(LlamaConfig(**{**donor.config.to_dict(), "num_hidden_layers": 3}))
    with pytest.raises(ValueError, match="has no model.layers.2"):
        initial_weights(path, other)


def test_torch_decode_batch_in_json_mode_writes_json_and_masks_the_labels() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verifier.core.grammar import GrammarCompiler, GrammarSpec
    from verifier.distill.data_torch import decode_batch

    tok = AutoTokenizer.from_pretrained(default_target_dir())
    model = AutoModelForCausalLM.from_pretrained(default_target_dir(), dtype=torch.float32).eval()
    eos = int(tok.eos_token_id)
    compiler = GrammarCompiler.of_tokenizer_file(default_target_dir() / "tokenizer.json")
    spec = GrammarSpec.json_schema({"type": "object"}, [eos])
    chats = [[{"role": "user", "content": "Name a fruit and its colour. Reply only with JSON."}],
             [{"role": "user", "content": "Say hi"}]]
    prompts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False) for c in chats]
    got = decode_batch(model, prompts, 0.0, torch.Generator().manual_seed(0), 48, 16, eos, eos,
                       [compiler.compile(spec) for _ in prompts])
    ended = 0
    for reply, top_ids, top_vals in got:
        assert top_ids[:, 0].tolist() == reply  # greedy under the mask
        check = compiler.compile(spec)
        for i, token in enumerate(reply):
            allowed = check.allowed(reply[:i])
            assert allowed is not None and allowed[token]
            finite = torch.isfinite(top_vals[i])
            assert all(allowed[int(t)] for t in top_ids[i][finite])  # the labels are the masked logits
            assert not finite.all() or int(allowed.sum()) >= 16
        if reply[-1] == eos:
            ended += 1
            json.loads(tok.decode(reply[:-1]))  # a finished reply is JSON
    with torch.no_grad():  # unmasked, the target would not have answered in JSON
        plain = model.generate(torch.tensor([prompts[1]]), max_new_tokens=4, do_sample=False)[0, len(prompts[1]):]
    assert not tok.decode(plain).lstrip().startswith("{")
    assert ended >= 1
