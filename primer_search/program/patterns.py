"""Subprogram patterns the vocabulary has no single op for: norms, softmax, activations.

The op set (Primer, So et al. 2021, Table 1) has no ReLU, LayerNorm or softmax, so a
program writes them as subprograms. Each ``write_*`` function appends one pattern's
instructions to a :class:`~primer_search.program.builder.SubBuilder` whose ``h0`` is the pattern's
input; the last instruction is its output. They live here, apart from the seed zoo, because
two places must agree on them exactly: the seeds (:mod:`primer_search.program.seeds`) write them,
and the compiler's fusions (:mod:`primer_search.program.fusions`) recognise them instruction for
instruction to run the ``jax.nn`` implementation instead.
"""

from __future__ import annotations

from primer_search.program.builder import SubBuilder

__all__ = ["GELU_C", "LN_EPS", "write_gelu", "write_layer_norm", "write_primer_norm",
           "write_relu", "write_rms_norm", "write_softmax", "write_swish"]

# Epsilon of the normalisers, as in the engine's final LayerNorm.
LN_EPS = 1e-6
# sqrt(2 / pi), the GELU's tanh approximation.
GELU_C = 0.7978845608028654


def write_layer_norm(s: SubBuilder) -> None:
    """LN(x) = (x - mean) / sqrt(var + eps) * g + b, over channels."""
    mean = s("RED_MEAN", s.h0)
    centred = s("DIFFERENCE", s.h0, mean)
    var = s("RED_MEAN", s("SQUARE", centred))
    std = s("ABS_ROOT", s("C_ADD", var, c=LN_EPS))
    s("SHIFT", s("SCALE", s("DIVIDE", centred, std)))


def write_softmax(s: SubBuilder) -> None:
    """Causal softmax over the key axis of a score state."""
    masked = s("MASK", s.h0)
    shifted = s("DIFFERENCE", masked, s("RED_MAX", masked))
    e = s("EXP", shifted)
    s("DIVIDE", e, s("RED_SUM", e))


def write_relu(s: SubBuilder) -> None:
    """ReLU(x) = max(x, 0 * x)."""
    s("MAX", s.h0, s("C_MUL", s.h0, c=0.0))


def write_rms_norm(s: SubBuilder) -> None:
    """RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g (Zhang & Sennrich 2019)."""
    ms = s("RED_MEAN", s("SQUARE", s.h0))
    s("SCALE", s("DIVIDE", s.h0, s("ABS_ROOT", s("C_ADD", ms, c=LN_EPS))))


def write_primer_norm(s: SubBuilder) -> None:
    """Primer's norm: (x - mean) / sqrt(mean(x * (x - mean)) + eps) * g + b. The
    pseudo-variance equals the variance in exact arithmetic."""
    centred = s("DIFFERENCE", s.h0, s("RED_MEAN", s.h0))
    pseudo_var = s("RED_MEAN", s("MULTIPLY", s.h0, centred))
    std = s("ABS_ROOT", s("C_ADD", pseudo_var, c=LN_EPS))
    s("SHIFT", s("SCALE", s("DIVIDE", centred, std)))


def write_gelu(s: SubBuilder) -> None:
    """GELU(z) ~ 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) (Hendrycks & Gimpel)."""
    cube = s("MULTIPLY", s.h0, s("SQUARE", s.h0))
    inner = s("C_MUL", s("ADD", s.h0, s("C_MUL", cube, c=0.044715)), c=GELU_C)
    half = s("C_MUL", s("C_ADD", s("TANH", inner), c=1.0), c=0.5)
    s("MULTIPLY", s.h0, half)


def write_swish(s: SubBuilder) -> None:
    """Swish_1(z) = z * sigmoid(z) (also called SiLU)."""
    s("MULTIPLY", s.h0, s("SIGMOID", s.h0))
