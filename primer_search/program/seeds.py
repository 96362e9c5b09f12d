"""Seed blocks written as DNA: the starting points of a search and its baselines.

Each seed is a function that builds a :class:`~primer_search.program.dna.DNA`; ``get(name)``
returns the DNA with default arguments, ``names()`` lists them. The zoo covers the
Transformer and its best-known successors (see each docstring for the paper, and for
what differs from it where a block cannot be written exactly):

=================  ==============================================================
transformer        Vaswani et al. 2017: LayerNorm, softmax attention, ReLU FFN
primer_ez          Primer-EZ (So et al. 2021): squared ReLU, multi-DConv-head attention
transformer_gelu   the Transformer with the tanh-approximate GELU
transformer_pp     Transformer++: RMSNorm and a SwiGLU FFN
glu, bilinear,     the GLU family of FFNs (Shazeer 2020), d_ff cut to 2/3 so that
reglu, geglu,      the parameter count stays that of the Transformer
swiglu
primer             full Primer: also shared QK, Primer's norm, pre/post-norm
performer          Performer (Choromanski et al. 2020): FAVOR+ attention
rwkv               RWKV-4 (Peng et al. 2023): time and channel mixing
monarch_mixer      M2-GPT (Fu et al. 2023): gated long convolution, Monarch MLP
pangu_pi           PanGu-pi (Wang et al. 2023): series activation, augmented shortcut
alibi_glu          ALiBi attention with a GEGLU FFN (the decoder parts of MosaicBERT)
=================  ==============================================================

All are pre-norm (``x + F(norm(x))``) unless the docstring says otherwise, have no
biases in their projections, and use 4 heads and a 4x FFN by default. Every seed is
checked against a hand-written JAX reference (``tests/reference_blocks.py``) and for
causality.

Vocabulary notes: the op set has no ReLU, LayerNorm or softmax, so seeds write them as
subprograms (``relu``: ``MAX(x, 0 * x)``; ``layer_norm``; ``softmax``: ``MASK``, subtract
the row max, ``EXP``, divide by the row sum). Multi-head attention is a call of a head
subprogram with ``heads = H``: each branch projects the normalised input to ``d / H``
channels for Q, K and V, so the stacked per-head projections equal the usual ``d x d``
matrices split by heads. A learned per-channel vector is written ``SHIFT(0 * x)``.
The sinusoidal position encoding of the language model (outside the block) is the same
for every seed, also for those whose papers use none (RWKV, M2, ALiBi).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

from primer_search.program.builder import ProgramBuilder, SubBuilder
from primer_search.program.dna import DNA
from primer_search.program.patterns import (
    write_gelu,
    write_layer_norm,
    write_primer_norm,
    write_relu,
    write_rms_norm,
    write_softmax,
    write_swish,
)

__all__ = ["get", "names", "register"]

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


# ---- shared subprograms (single-subprogram patterns are in primer_search.program.patterns) ----

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


# An activation applied in MAIN: (main, state) -> state.
Activation = Callable[[SubBuilder, int], int]


def write_glu_ffn(main: SubBuilder, h: int, act: Activation | None, d_ff: Fraction) -> int:
    """W2 (act(W h) * V h), the GLU family (Shazeer 2020); ``act=None`` is Bilinear."""
    gate = main("CONV_1X1", h, dim=d_ff)
    value = main("CONV_1X1", h, dim=d_ff)
    if act is not None:
        gate = act(main, gate)
    return main("CONV_1X1", main("MULTIPLY", gate, value), dim=1)


def _glu_transformer(act_writer: Callable[[SubBuilder], None] | None, unary: str | None,
                     heads: int, d_ff: Fraction, norm_writer=write_layer_norm) -> DNA:
    """A Transformer whose FFN is a GLU with the given gate activation: a subprogram
    (``act_writer``), a primitive (``unary``) or none (Bilinear)."""
    p = ProgramBuilder()
    main, norm, head, softmax = p.subprograms(4)
    act_sub = p.subprogram() if act_writer else None
    norm_writer(norm)
    write_softmax(softmax)
    write_attention_head(head, softmax)
    if act_sub is not None:
        act_writer(act_sub)
        act = lambda m, x: m.call(act_sub, x)  # noqa: E731
    elif unary is not None:
        act = lambda m, x: m(unary, x)  # noqa: E731
    else:
        act = None
    write_residual_block(main, norm, head, heads, lambda h: write_glu_ffn(main, h, act, d_ff))
    return p.build()


# The GLU FFNs have three d_model x d_ff matrices instead of two, so d_ff = 4 * 2/3.
GLU_D_FF = Fraction(8, 3)


# ---- seeds --------------------------------------------------------------------------

def _mlp_transformer(act_writer: Callable[[SubBuilder], None], heads: int, d_ff: Fraction,
                     dconv: str | None = None, square: bool = False) -> DNA:
    """A pre-norm Transformer with the FFN ``W2 act(W1 x)`` (``act(.)^2`` if ``square``),
    ``act`` a subprogram; ``dconv`` follows Q, K and V with a depthwise convolution."""
    p = ProgramBuilder()
    main, norm, head, softmax, act = p.subprograms(5)
    write_layer_norm(norm)
    write_softmax(softmax)
    act_writer(act)
    write_attention_head(head, softmax, dconv=dconv)

    def ffn(h: int) -> int:
        hidden = main.call(act, main("CONV_1X1", h, dim=d_ff))
        if square:
            hidden = main("SQUARE", hidden)
        return main("CONV_1X1", hidden, dim=1)

    write_residual_block(main, norm, head, heads, ffn)
    return p.build()


@register
def transformer(heads: int = 4, d_ff: int = 4) -> DNA:
    """Vanilla Transformer decoder block (Vaswani et al. 2017), pre-norm.

    ``y = x + MHA(LN(x)); out = y + W2 ReLU(W1 LN(y))``, no biases, d_ff = 4 d.
    """
    return _mlp_transformer(write_relu, heads, d_ff)


@register
def primer_ez(heads: int = 4, d_ff: int = 4, squared_relu: bool = True,
              mdha: bool = True) -> DNA:
    """Primer-EZ (So et al. 2021): the Transformer with two changes.

    * squared ReLU in the FFN: ``W2 (max(W1 x, 0))^2``;
    * multi-DConv-head attention (MDHA): Q, K and V are each followed by a causal
      depthwise convolution of width 3 along the sequence, one filter per channel per head
      (``z'_t = w0 z_t + w1 z_{t-1} + w2 z_{t-2}``).

    ``squared_relu=False`` or ``mdha=False`` leaves that change out (the paper's
    ablations; the seed is both).
    """
    return _mlp_transformer(write_relu, heads, d_ff, dconv="DCONV_3X1" if mdha else None,
                            square=squared_relu)


@register
def transformer_gelu(heads: int = 4, d_ff: int = 4) -> DNA:
    """The Transformer with GELU in the FFN: ``W2 GELU(W1 x)``, the tanh approximation
    ``0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))`` (Hendrycks & Gimpel 2016)."""
    return _mlp_transformer(write_gelu, heads, d_ff)


@register
def transformer_pp(heads: int = 4, d_ff: Fraction = GLU_D_FF) -> DNA:
    """Transformer++ as benchmarked in T5 (Narang et al. 2021) and Primer (So et al.
    2021): RMSNorm instead of LayerNorm and a SwiGLU FFN ``W2 (Swish(W x) * V x)``, no
    biases. (Primer's Transformer++ also uses relative position biases; the engine's
    position encoding is fixed outside the block.)"""
    return _glu_transformer(write_swish, None, heads, Fraction(d_ff), norm_writer=write_rms_norm)


@register
def glu(heads: int = 4, d_ff: Fraction = GLU_D_FF) -> DNA:
    """Transformer with a GLU FFN, ``W2 (sigmoid(W x) * V x)`` (Dauphin et al. 2017;
    Shazeer 2020), d_ff = 8/3 d to keep the Transformer's parameter count."""
    return _glu_transformer(None, "SIGMOID", heads, Fraction(d_ff))


@register
def bilinear(heads: int = 4, d_ff: Fraction = GLU_D_FF) -> DNA:
    """Transformer with a Bilinear FFN, ``W2 (W x * V x)`` (Shazeer 2020), d_ff = 8/3 d."""
    return _glu_transformer(None, None, heads, Fraction(d_ff))


@register
def reglu(heads: int = 4, d_ff: Fraction = GLU_D_FF) -> DNA:
    """Transformer with a ReGLU FFN, ``W2 (max(0, W x) * V x)`` (Shazeer 2020), d_ff = 8/3 d."""
    return _glu_transformer(write_relu, None, heads, Fraction(d_ff))


@register
def geglu(heads: int = 4, d_ff: Fraction = GLU_D_FF) -> DNA:
    """Transformer with a GEGLU FFN, ``W2 (GELU(W x) * V x)`` (Shazeer 2020), d_ff = 8/3 d,
    tanh-approximate GELU."""
    return _glu_transformer(write_gelu, None, heads, Fraction(d_ff))


@register
def swiglu(heads: int = 4, d_ff: Fraction = GLU_D_FF) -> DNA:
    """Transformer with a SwiGLU FFN, ``W2 (Swish_1(W x) * V x)`` (Shazeer 2020),
    d_ff = 8/3 d. Transformer++ is this with RMSNorm."""
    return _glu_transformer(write_swish, None, heads, Fraction(d_ff))


@register
def primer(heads: int = 4, d_ff: int = 4) -> DNA:
    """Full Primer (So et al. 2021, Sec. 4 and the released ``primer/t5_models.py``).

    Primer-EZ's squared ReLU and multi-DConv-head attention, plus:

    * shared QK representation: ``K = DConv(x W_k)``, ``Q = K W_q``; V as in MDHA;
    * Primer's norm, with the pseudo-variance ``mean(x (x - mean))``;
    * normalisation before attention but after the FFN:
      ``y = x + MHA(N(x)); out = y + N(FFN(y))``.

    What differs: the released code's ``Q = K W_q`` is one ``d x d`` matrix over all
    heads; here each head has its own ``d/H x d/H`` matrix (a multi-head branch sees only
    its own channels), so ``W_q`` is block-diagonal by heads.
    """
    p = ProgramBuilder()
    main, norm, head, softmax, relu = p.subprograms(5)
    write_primer_norm(norm)
    write_softmax(softmax)
    write_relu(relu)
    k = head("DCONV_3X1", head("CONV_1X1", head.h0, dim=1))
    q = head("CONV_1X1", k, dim=1)
    v = head("DCONV_3X1", head("CONV_1X1", head.h0, dim=1))
    head("MAT_MUL", head.call(softmax, head("T_MAT_MUL", q, k)), v)
    attn = main.call(head, main.call(norm, main.h0), heads=heads)
    x = main("ADD", main.h0, main("CONV_1X1", attn, dim=1))
    hidden = main("SQUARE", main.call(relu, main("CONV_1X1", x, dim=d_ff)))
    main("ADD", x, main.call(norm, main("CONV_1X1", hidden, dim=1)))
    return p.build()


@register
def performer(heads: int = 4, d_ff: int = 4, features: Fraction = Fraction(4),
              feature_seed: float = 1.0) -> DNA:
    """Performer (Choromanski et al. 2020): the Transformer with FAVOR+ attention.

    Per head, ``phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(m)`` with ``x' = x / d^(1/4)`` and
    ``m = features * d_head`` positive orthogonal random features (``RAND_FEATURES``);
    ``out_t = sum_{s<=t} (phi(q_t) . phi(k_s)) v_s / sum_{s<=t} phi(q_t) . phi(k_s)``.

    What differs: the causal sums are written in their quadratic masked form (the same
    function as FAVOR+'s prefix sums, quadratic time); the features are drawn once from
    ``feature_seed`` (shared by heads and layers) and never redrawn during training; no
    kernel epsilon or max-stabiliser is added.
    """
    p = ProgramBuilder()
    main, norm, head, relu = p.subprograms(4)
    write_layer_norm(norm)
    write_relu(relu)
    q, k, v = (head("CONV_1X1", head.h0, dim=1) for _ in range(3))
    fq = head("RAND_FEATURES", q, dim=features, c=feature_seed)
    fk = head("RAND_FEATURES", k, dim=features, c=feature_seed)
    kernel = head("T_MAT_MUL", fq, fk)  # the 1/sqrt(m) scale cancels in the ratio
    head("DIVIDE", head("MAT_MUL", kernel, v), head("RED_SUM", kernel))

    def ffn(h: int) -> int:
        return main("CONV_1X1", main.call(relu, main("CONV_1X1", h, dim=d_ff)), dim=1)

    write_residual_block(main, norm, head, heads, ffn)
    return p.build()


def _token_shifts(main: SubBuilder, x: int, n: int) -> list[int]:
    """``n`` token shifts of ``x``: RWKV's ``mu * x_t + (1 - mu) * x_{t-1}``, written
    ``prev + mu (x - prev)`` with ``mu = 0.5 * g`` per channel (g learned, starting at 1:
    an even mix)."""
    prev = main("DELAY", x)
    half_diff = main("C_MUL", main("DIFFERENCE", x, prev), c=0.5)
    return [main("ADD", prev, main("SCALE", half_diff)) for _ in range(n)]


@register
def rwkv(d_ff: int = 4, decay_init: float = -1.0) -> DNA:
    """RWKV-4 (Peng et al. 2023), one time-mixing and one channel-mixing block, pre-norm.

    Token shift ``x'_t = mu * x_t + (1 - mu) * x_{t-1}``, separate ``mu`` for r, k, v.
    Time mixing: ``wkv_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t) /
    (sum_{i<t} e^{-(t-1-i) w + k_i} + e^{u + k_t})`` with ``w = exp(s + decay_init) > 0``
    a learned per-channel decay (the sums are ``DECAY_SUM`` prefix sums, shifted by
    ``DELAY``) and ``u`` a learned bonus; output ``W_o (sigmoid(r) * wkv)``. Channel
    mixing: ``sigmoid(W_r x'_r) * W_v max(W_k x'_k, 0)^2``.

    What differs: ``mu`` is parameterised as ``0.5 * g``; the paper's per-channel initial
    spreads of ``mu``, ``w`` and ``u`` are replaced by 0.5, ``exp(decay_init)`` and 0;
    the exponentials are not stabilised by a running max (EXP clamps at 80).
    """
    p = ProgramBuilder()
    main, norm, relu = p.subprograms(3)
    write_layer_norm(norm)
    write_relu(relu)
    # Time mixing.
    xn = main.call(norm, main.h0)
    r, k, v = (main("CONV_1X1", mixed, dim=1) for mixed in _token_shifts(main, xn, 3))
    decay = main("EXP", main("C_ADD", main("SHIFT", main("C_MUL", xn, c=0.0)), c=decay_init))
    ek = main("EXP", k)
    bonus = main("EXP", main("SHIFT", k))  # e^{u + k_t}
    num = main("ADD", main("DELAY", main("DECAY_SUM", main("MULTIPLY", ek, v), decay)),
               main("MULTIPLY", bonus, v))
    den = main("ADD", main("DELAY", main("DECAY_SUM", ek, decay)), bonus)
    wkv = main("DIVIDE", num, den)
    x = main("ADD", main.h0, main("CONV_1X1", main("MULTIPLY", main("SIGMOID", r), wkv), dim=1))
    # Channel mixing.
    mk, mr = _token_shifts(main, main.call(norm, x), 2)
    kv = main("CONV_1X1", main("SQUARE", main.call(relu, main("CONV_1X1", mk, dim=d_ff))), dim=1)
    main("ADD", x, main("MULTIPLY", main("SIGMOID", main("CONV_1X1", mr, dim=1)), kv))
    return p.build()


@register
def monarch_mixer(d_ff: int = 4) -> DNA:
    """Monarch Mixer, M2-GPT style (Fu et al. 2023): no attention and no dense MLP.

    Sequence mixing (Hyena-style, order 2): ``q, k, v = DConv3(W x)`` each, then
    ``W_o (q * h * (k * v))`` with ``h *`` a causal long convolution (``LONG_CONV``)
    whose filter spans the whole sequence. Dimension mixing: ``M2 GELU(M1 x)`` with
    ``M1, M2`` Monarch matrices (``MONARCH``: two block-diagonal factors with 4 blocks
    and a stride permutation), pre-norm LayerNorm around both.

    What differs: M2's implicit filters (a small MLP of positional features times a decay
    window) are a sum of 4 learned damped cosines per channel; the convolution is
    computed directly (quadratic in length) rather than by a Monarch FFT, which gives the
    same function; the projections around the long convolution are dense.
    """
    p = ProgramBuilder()
    main, norm, gelu = p.subprograms(3)
    write_layer_norm(norm)
    write_gelu(gelu)
    u = main.call(norm, main.h0)
    q, k, v = (main("DCONV_3X1", main("CONV_1X1", u, dim=1)) for _ in range(3))
    y = main("MULTIPLY", q, main("LONG_CONV", main("MULTIPLY", k, v)))
    x = main("ADD", main.h0, main("CONV_1X1", y, dim=1))
    hidden = main.call(gelu, main("MONARCH", main.call(norm, x), dim=d_ff))
    main("ADD", x, main("MONARCH", hidden, dim=1))
    return p.build()


# PanGu-pi's series activation: offsets b_i of its terms at initialisation.
SERIES_OFFSETS = (-1.0, 0.0, 1.0)


@register
def pangu_pi(heads: int = 4, d_ff: int = 4) -> DNA:
    """PanGu-pi (Wang et al. 2023): nonlinearity compensation in both sub-blocks.

    * Augmented shortcut around attention: ``y = x + MHA(LN(x)) + GELU(x Theta)``.
    * Series informed activation in the FFN: ``A(z) = sum_i a_i GELU(z + b_i)``, three
      terms, ``a_i = g_i / 3`` and ``b_i = offset_i + s_i`` (offsets -1, 0, 1; g, s
      learned).

    What differs: ``a_i`` and ``b_i`` are learned per channel (a superset of scalars);
    one augmented shortcut (the paper's sum allows several).
    """
    p = ProgramBuilder()
    main, norm, head, softmax, gelu = p.subprograms(5)
    write_layer_norm(norm)
    write_softmax(softmax)
    write_gelu(gelu)
    write_attention_head(head, softmax)
    attn = main.call(head, main.call(norm, main.h0), heads=heads)
    shortcut = main.call(gelu, main("CONV_1X1", main.h0, dim=1))
    x = main("ADD", main("ADD", main.h0, main("CONV_1X1", attn, dim=1)), shortcut)
    z = main("CONV_1X1", main.call(norm, x), dim=d_ff)
    terms = []
    for offset in SERIES_OFFSETS:
        shifted = main("SHIFT", main("C_ADD", z, c=offset) if offset else z)
        terms.append(main("SCALE", main("C_MUL", main.call(gelu, shifted), c=1 / len(SERIES_OFFSETS))))
    series = terms[0]
    for t in terms[1:]:
        series = main("ADD", series, t)
    main("ADD", x, main("CONV_1X1", series, dim=1))
    return p.build()


def alibi_slopes(heads: int) -> list[float]:
    """ALiBi's head slopes ``m_h = 2^(-8 h / H)``, h = 1 .. H."""
    return [2.0 ** (-8.0 * h / heads) for h in range(1, heads + 1)]


@register
def alibi_glu(heads: int = 4, d_ff: Fraction = GLU_D_FF) -> DNA:
    """ALiBi attention (Press et al. 2022) with a GEGLU FFN: the decoder-relevant parts of
    MosaicBERT (Portes et al. 2023). Scores ``q_t . k_s / sqrt(d_head) - m_h (t - s)``
    with slopes ``m_h = 2^(-8h/H)``.

    Each head is its own subprogram (the slope is an instruction constant, and the
    branches of one multi-head call share their constants), projecting to ``d / H``
    channels; the output is ``sum_h W_o,h head_h``, which equals ``W_o`` applied to the
    concatenated heads. What differs: d_ff = 8/3 d (MosaicBERT keeps 4 d for its GLU);
    the speed parts of MosaicBERT (FlashAttention, unpadding, bf16) are not block
    structure.
    """
    p = ProgramBuilder()
    main = p.subprogram()
    norm = p.subprogram()
    head_subs = p.subprograms(heads)
    softmax, gelu = p.subprograms(2)
    write_layer_norm(norm)
    write_softmax(softmax)
    write_gelu(gelu)
    width = Fraction(1, heads)
    for s, slope in zip(head_subs, alibi_slopes(heads)):
        q, k, v = (s("CONV_1X1", s.h0, dim=width) for _ in range(3))
        scores = s("ALIBI", s("T_MAT_MUL", q, k), c=slope)
        s("MAT_MUL", s.call(softmax, scores), v)
    xn = main.call(norm, main.h0)
    attn = None
    for s in head_subs:
        out = main("CONV_1X1", main.call(s, xn), dim=1)
        attn = out if attn is None else main("ADD", attn, out)
    x = main("ADD", main.h0, attn)
    act = lambda m, h: m.call(gelu, h)  # noqa: E731
    main("ADD", x, write_glu_ffn(main, main.call(norm, x), act, Fraction(d_ff)))
    return p.build()
