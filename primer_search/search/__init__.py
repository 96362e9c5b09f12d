"""The search: which candidates to score, where, and what is kept.

``evolution`` (regularized evolution, a pure ask/tell object), ``fingerprint``
(functional dedup), ``store`` (the SQLite record of every candidate), ``loop`` (propose,
dedup, dispatch, record, feed back: no Ray), ``pool`` (what workers are asked and
answer, and an in-process pool), ``ray_pool`` (Ray actors: the only module that imports
Ray), ``config`` (the search configuration) and ``controller`` (puts a store, a pool and
the loop together: ``run_search``, ``resume_search``).

Submodules are imported by name; importing this package imports none of them.
"""
