"""Scoring a candidate: how good a block is.

``config`` (the fitness settings, no JAX), ``data`` (tokenisers, cache, corpora),
``model`` (the fixed language-model shell around a block), ``train`` (pure train and eval
steps), ``evaluate`` (train under a budget with hurdles, contain every failure),
``metrics``, ``hurdles`` (stage lengths and thresholds), ``results`` (what an evaluation
produced and the status vocabulary, no JAX) and ``toy`` (a stand-in fitness for testing
the search machinery).

Submodules are imported by name; importing this package imports none of them, so that
readers of results load no JAX.
"""
