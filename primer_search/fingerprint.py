"""Functional fingerprints: never train the same behaviour twice.

As AutoML-Zero's functional-equivalence cache (Real et al. 2020): run a candidate block
on a fixed probe input with parameters drawn from a fixed seed, and hash its outputs,
rounded so that float noise does not matter. Two programs with the same fingerprint
compute the same function of their parameters on the probe (for example the same program
with dead code or with swapped independent instructions), so the second reuses the
first one's fitness.

Conservative by construction: programs that compute the same function with parameters in
a different order get different fingerprints and are both trained.
"""

from __future__ import annotations

import hashlib

import jax
import numpy as np

from primer_search.compiler import compile_block
from primer_search.dna import DNA

__all__ = ["PROBE_SEQ", "PROBE_WIDTH", "fingerprint"]

PROBE_WIDTH = 32
PROBE_SEQ = 8
PROBE_BATCH = 2
SIGNIFICANT_DIGITS = 6


def _probe() -> np.ndarray:
    rng = np.random.default_rng(20210908)  # fixed: fingerprints are comparable forever
    return rng.standard_normal((PROBE_BATCH, PROBE_SEQ, PROBE_WIDTH)).astype(np.float32)


def _round(y: np.ndarray) -> np.ndarray:
    """Round to SIGNIFICANT_DIGITS; NaN and +-Inf are kept as they are."""
    y = np.asarray(y, np.float64)
    finite = np.isfinite(y) & (y != 0)
    exponent = np.zeros_like(y)
    exponent[finite] = np.floor(np.log10(np.abs(y[finite])))
    scale = 10.0 ** (SIGNIFICANT_DIGITS - 1 - exponent)
    out = np.where(finite, np.round(y * scale) / scale, y)
    return np.where(out == 0, 0.0, out)  # -0.0 and 0.0 hash alike


def fingerprint(dna: DNA) -> str:
    """Hex digest of the block's rounded outputs on the probe (see module doc)."""
    block = compile_block(dna, PROBE_WIDTH)
    x = _probe()
    with jax.default_device(jax.devices("cpu")[0]):
        y = np.asarray(jax.jit(block.apply)(block.init(0, x), x))
    return hashlib.sha256(_round(y).tobytes()).hexdigest()
