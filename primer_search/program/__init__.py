"""Blocks as programs: what a candidate *is*.

``dna`` (the program as plain data, no JAX), ``validate`` (checks against the op
vocabulary, dead-code pruning, the canonical form and its hash), ``builder`` (writing
programs by hand), ``patterns`` (softmax, ReLU, LayerNorm and other subprograms the seeds
and the fusions share), ``seeds`` (the seed zoo), ``random_programs`` and ``mutations``
(what evolution draws), ``compiler`` and ``fusions`` (a program to a JAX block).

Nothing here trains or searches. Submodules are imported by name; importing this package
imports none of them.
"""
