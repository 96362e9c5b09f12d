"""Functional fingerprints: never train the same behaviour twice, never merge two that differ.

As AutoML-Zero's functional-equivalence cache (Real et al. 2020): run a candidate block
on a fixed probe input and hash its outputs, rounded so that float noise does not
matter. A child whose fingerprint matches an earlier candidate reuses that fitness
untrained, so a fingerprint must separate every two programs whose *training* differs,
and should still match programs that are one program written two ways.

What separates (each has a test in ``tests/test_fingerprint.py``):

* **Parameters away from their initial values.** At initialisation SCALE is 1 and SHIFT
  is 0, and a branch can be exactly zero (``SHIFT(C_MUL(x, 0))``), so inserting such an
  op leaves the outputs unchanged although it trains differently. The probe therefore
  runs with every parameter drawn as at initialisation and then perturbed (scaled by
  ``1 + 0.5 n`` and shifted by ``0.2 n`` of its root mean square, or of 1 where that is 0).
* **The real width.** The probe runs at the search's model width, not a small one:
  dimension sizes that round to the same channel count at a small width (dim 1/16 and
  1/8 in a 4-head call at width 32) differ at the real one.
* **Parameter shapes.** The sorted list of parameter shapes at that width is hashed with
  the outputs, so two programs with the same outputs but different parameter counts
  (which train differently) never match.

What still matches (true duplicates):

* dead code and fields an op does not read (the probe compiles the canonical program);
* independent instructions in another order, and the arguments of a commutative op
  (``ADD``, ``MULTIPLY``, ``MAX``, ``MIN`` on inputs of equal width) exchanged. Parameters
  are drawn not in program order but from a seed derived from each instruction's
  *structure*: what it computes from which inputs (a hash over its dataflow), how its
  output is used, and its call site, so an instruction gets the same parameters wherever
  it sits in the program.

Conservative where the structure cannot tell: two instructions that compute the same
expression and are used the same way are told apart by their order, so exchanging them
gives another fingerprint and both programs are trained.
"""

from __future__ import annotations

import hashlib

import jax
import numpy as np

import primitives
from primer_search.program.compiler import compile_block, param_name
from primer_search.program.dna import DNA
from primer_search.program.validate import MAIN_WIDTH, canonical, output_width
from primitives.spec import Width

__all__ = ["FINGERPRINT_VERSION", "PROBE_SEQ", "fingerprint"]

FINGERPRINT_VERSION = 2
PROBE_SEQ = 8
PROBE_BATCH = 2
SIGNIFICANT_DIGITS = 6
PERTURB_SCALE = 0.5
PERTURB_SHIFT = 0.2


def _digest(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _probe(d_model: int) -> np.ndarray:
    rng = np.random.default_rng(20210908)  # fixed: fingerprints are comparable forever
    return rng.standard_normal((PROBE_BATCH, PROBE_SEQ, d_model)).astype(np.float32)


def _round(y: np.ndarray) -> np.ndarray:
    """Round to SIGNIFICANT_DIGITS; NaN and +-Inf are kept as they are."""
    y = np.asarray(y, np.float64)
    finite = np.isfinite(y) & (y != 0)
    exponent = np.zeros_like(y)
    exponent[finite] = np.floor(np.log10(np.abs(y[finite])))
    scale = 10.0 ** (SIGNIFICANT_DIGITS - 1 - exponent)
    out = np.where(finite, np.round(y * scale) / scale, y)
    return np.where(out == 0, 0.0, out)  # -0.0 and 0.0 hash alike


# ---- structural identity of instructions ---------------------------------------------

class _Structure:
    """Structural names of a canonical program's instructions, by subprogram context.

    ``_analyse(sub, w0, w1, same)`` gives, for a subprogram called with arguments of
    widths ``w0``, ``w1``: a hash of what it returns as a function of its arguments, and
    for each instruction a name made of what it computes, how its output is read, and
    (only for exact ties) its order. ``paths()`` joins the names along call sites into
    the names of every parameter path of the compiled block.
    """

    def __init__(self, dna: DNA):
        self.dna = dna
        self._memo: dict = {}

    def _analyse(self, sub: int, w0: Width, w1: Width, same: bool):
        """``same``: the caller passes one expression as both arguments, so reading
        ``h0`` or ``h1`` is the same thing."""
        key = (sub, w0, w1, same)
        if key in self._memo:
            return self._memo[key]
        instructions = self.dna.subprograms[sub].instructions
        widths, exprs = [w0, w1], ["arg0", "arg0" if same else "arg1"]
        readers: list[list[tuple]] = [[] for _ in range(len(instructions) + 2)]
        for ins in instructions:
            a, b = widths[ins.in1], widths[ins.in2]
            if ins.is_call:
                callee = self._analyse(ins.target, a, b, exprs[ins.in1] == exprs[ins.in2])[0]
                expr = _digest("CALL", callee, ins.heads, exprs[ins.in1], exprs[ins.in2])
                out = output_width(self.dna, ins.target, a, b)
                slots = [(ins.in1, 1), (ins.in2, 2)]
            else:
                prim = primitives.get(ins.op)
                inputs = [exprs[ins.in1]] + ([exprs[ins.in2]] if prim.arity == 2 else [])
                symmetric = prim.commutative and a == b
                if symmetric:
                    inputs.sort()
                expr = _digest(ins.op, ins.const if prim.reads_const else None,
                               str(ins.dim) if prim.reads_dim else None, *inputs)
                out = prim.shape(a, b, ins.dim)
                slots = [(ins.in1, 0 if symmetric else 1)]
                if prim.arity == 2:
                    slots.append((ins.in2, 0 if symmetric else 2))
            for state, slot in slots:
                readers[state].append((expr, slot))
            widths.append(out)
            exprs.append(expr)
        readers[-1].append(("return", 0))
        names, seen = [], {}
        for i in range(len(instructions)):
            base = (exprs[i + 2], tuple(sorted(readers[i + 2])))
            seen[base] = seen.get(base, -1) + 1
            names.append(_digest(*base, seen[base]))
        result = (exprs[-1], names, widths, exprs)
        self._memo[key] = result
        return result

    def paths(self) -> dict[tuple, str]:
        """Parameter path (as ``Block.init_with`` passes it) -> structural name."""
        out: dict[tuple, str] = {}
        self._walk(0, MAIN_WIDTH, MAIN_WIDTH, True, (), "main", out)  # MAIN: x, x
        return out

    def _walk(self, sub: int, w0: Width, w1: Width, same: bool, path: tuple, prefix: str,
              out: dict):
        _, names, widths, exprs = self._analyse(sub, w0, w1, same)
        for i, ins in enumerate(self.dna.subprograms[sub].instructions):
            key, name = param_name(i, ins), f"{prefix}/{names[i]}"
            if ins.is_call:
                a, b = widths[ins.in1], widths[ins.in2]
                both = exprs[ins.in1] == exprs[ins.in2]
                if ins.heads == 1:
                    self._walk(ins.target, a, b, both, path + (key,), name, out)
                else:
                    for h in range(ins.heads):
                        self._walk(ins.target, a, b, both, path + (key, h), f"{name}#{h}", out)
            else:
                out[path + (key,)] = name


def _perturbed(name: str, op: str, in_width: int, out_width: int) -> dict:
    """One instruction's parameters: drawn as at initialisation from a seed of its
    structural name, then moved away from those values (see the module doc)."""
    rng = np.random.default_rng(int(_digest(name), 16))
    leaves = primitives.get(op).init(rng, in_width, out_width)
    out = {}
    for leaf, w in leaves.items():
        w = np.asarray(w, np.float32)
        rms = float(np.sqrt(np.mean(np.square(w)))) if w.size else 0.0
        scale = 1.0 + PERTURB_SCALE * rng.standard_normal(w.shape)
        shift = PERTURB_SHIFT * (rms if rms > 0 else 1.0) * rng.standard_normal(w.shape)
        out[leaf] = (w * scale + shift).astype(np.float32)
    return out


def fingerprint(dna: DNA, d_model: int = 64) -> str:
    """Hex digest of the block's rounded outputs on the probe at width ``d_model`` with
    structurally drawn, perturbed parameters, and of its parameter shapes (module doc)."""
    program = canonical(dna)
    block = compile_block(program, d_model)
    names = _Structure(program).paths()
    x = _probe(d_model)
    params = block.init_with(
        lambda path, op, n_in, n_out: _perturbed(names[path], op, n_in, n_out), x)
    shapes = sorted(str(tuple(p.shape)) for p in jax.tree_util.tree_leaves(params))
    with jax.default_device(jax.devices("cpu")[0]):
        y = np.asarray(jax.jit(block.apply)(params, x))
    return hashlib.sha256(
        repr((FINGERPRINT_VERSION, d_model, shapes)).encode() + _round(y).tobytes()
    ).hexdigest()

