"""Batching verification from many edges under latency targets (WISP, docs/references.md).

``estimator`` predicts a batch's verification time and learns from measured batches;
``policy`` forms a batch (earliest deadline first, then value density, every admission checked
against the estimator) and decides when a round must be refused; both are pure. ``scheduler``
is the asyncio loop that runs the policy over one queue and calls the backend.
"""
