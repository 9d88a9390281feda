"""Tandem's shared core: what the edge (``proxy``) and the verifier (``verifier``) both need.

Dependencies point one way, ``proxy -> verifier.core <- verifier``: this package imports no
module of either side's transport or engines (no FastAPI app, no HTTP client, no torch, no
backend, no drafter), so the edge installs without the verifier's engines and the verifier
ships without the edge. The contracts are in ``pyproject.toml`` (``[tool.importlinter]``),
checked by ``make test``.

- ``sampling``: distributions and keyed randomness (pure numpy; the words: docs/architecture.md#glossary);
- ``acceptance``: greedy verification and exact rejection sampling (pure numpy);
- ``bounds``: acceptance estimators and analytic throughput bounds (pure);
- ``protocol`` and ``codec``: the verify API's wire models and the round codec (``DraftToken``,
  what a round carries; how the edge draws one is the edge's, ``proxy.draft.draws``);
- ``errors``: the one error envelope both servers answer with;
- ``chat_template``, ``prompts``: chat rendering and prompt files;
- ``gguf``: the one place a llama.cpp model is opened (llama_cpp is imported lazily);
- ``models``: where the default model pair lives; ``logs``: JSON-lines logging.
"""
