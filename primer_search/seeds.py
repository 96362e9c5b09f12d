"""Seed blocks written as DNA: the starting points of a search and its baselines.

Each seed is a function that builds a :class:`~primer_search.dna.DNA`; ``get(name)``
returns the DNA with default arguments. All seeds are pre-norm: ``x + F(LN(x))``.

Vocabulary notes: the op set has no ReLU, LayerNorm or softmax, so seeds write them as
subprograms (``relu``: ``MAX(x, 0 * x)``; ``layer_norm``; ``softmax``: ``MASK``, subtract
the row max, ``EXP``, divide by the row sum). Multi-head attention is a call of a head
subprogram with ``heads = H``: each branch projects the normalised input to ``d / H``
channels for Q, K and V, so the stacked per-head projections equal the usual ``d x d``
matrices split by heads.
"""

from __future__ import annotations

from collections.abc import Callable

from primer_search.builder import ProgramBuilder, SubBuilder
from primer_search.dna import DNA

__all__ = ["get", "names", "primer_ez", "register", "transformer"]

LN_EPS = 1e-6

_SEEDS: dict[str, Callable[..., DNA]] = {}


def register(fn: Callable[..., DNA]) -> Callable[..., DNA]:
    _SEEDS[fn.__name__] = fn
    return fn


def names() -> tuple[str, ...]:
    return tuple(_SEEDS)


def get(name: str, **kwargs) -> DNA:
    """The seed DNA called ``name`` (see :func:`names`)."""
    try:
        fn = _SEEDS[name]
    except KeyError:
        raise KeyError(f"unknown seed {name!r}; known seeds: {', '.join(_SEEDS)}") from None
    return fn(**kwargs)


# ---- shared subprograms -------------------------------------------------------------

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
    s("MAX", s.h0, s("C_MUL", s.h0, c=0.0))


def write_attention_head(s: SubBuilder, softmax: SubBuilder, dconv: str | None = None) -> None:
    """One head: Q, K, V projections (optionally each followed by a causal depthwise
    convolution), scaled dot-product scores, causal softmax, weighted sum of V."""
    q, k, v = (s("CONV_1X1", s.h0, dim=1) for _ in range(3))
    if dconv:
        q, k, v = (s(dconv, t) for t in (q, k, v))
    probs = s.call(softmax, s("T_MAT_MUL", q, k))
    s("MAT_MUL", probs, v)


def write_residual_block(main: SubBuilder, norm: SubBuilder, head: SubBuilder,
                         heads: int, ffn: Callable[[int], int]) -> None:
    """main: x + Wo(MHA(LN(x))), then + FFN(LN(.))."""
    attn = main.call(head, main.call(norm, main.h0), heads=heads)
    x = main("ADD", main.h0, main("CONV_1X1", attn, dim=1))
    main("ADD", x, ffn(main.call(norm, x)))


# ---- seeds --------------------------------------------------------------------------

@register
def transformer(heads: int = 4, d_ff: int = 4) -> DNA:
    """Vanilla Transformer decoder block (Vaswani et al. 2017), pre-norm.

    ``y = x + MHA(LN(x)); out = y + W2 ReLU(W1 LN(y))``, no biases, d_ff = 4 d.
    """
    p = ProgramBuilder()
    main, norm, head, softmax, relu = p.subprograms(5)
    write_layer_norm(norm)
    write_softmax(softmax)
    write_relu(relu)
    write_attention_head(head, softmax)

    def ffn(h: int) -> int:
        hidden = main.call(relu, main("CONV_1X1", h, dim=d_ff))
        return main("CONV_1X1", hidden, dim=1)

    write_residual_block(main, norm, head, heads, ffn)
    return p.build()


@register
def primer_ez(heads: int = 4, d_ff: int = 4) -> DNA:
    """Primer-EZ (So et al. 2021): the Transformer with two changes.

    * squared ReLU in the FFN: ``W2 (max(W1 x, 0))^2``;
    * multi-DConv-head attention (MDHA): Q, K and V are each followed by a causal
      depthwise convolution of width 3 along the sequence, one filter per channel per head
      (``z'_t = w0 z_t + w1 z_{t-1} + w2 z_{t-2}``).
    """
    p = ProgramBuilder()
    main, norm, head, softmax, relu = p.subprograms(5)
    write_layer_norm(norm)
    write_softmax(softmax)
    write_relu(relu)
    write_attention_head(head, softmax, dconv="DCONV_3X1")

    def ffn(h: int) -> int:
        hidden = main("SQUARE", main.call(relu, main("CONV_1X1", h, dim=d_ff)))
        return main("CONV_1X1", hidden, dim=1)

    write_residual_block(main, norm, head, heads, ffn)
    return p.build()
