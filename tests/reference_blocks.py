"""Hand-written JAX decoder blocks, written from the formulas, for equivalence tests.

Each takes the parameter tree that ``compile_block`` builds for the matching seed (so the
weights are the same) and computes the block the usual way: fused matrices reshaped into
heads, ``jax.nn.softmax`` with a causal mask, ``jax.nn.relu``, a textbook LayerNorm.
"""

import jax
import jax.numpy as jnp


def layer_norm(p, x, eps=1e-6):
    g, b = p["h9_SCALE"]["scale"], p["h10_SHIFT"]["shift"]
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * g + b


def causal_depthwise_conv3(z, taps):
    """z: (B, T, H, E); taps: (H, 3, E); z'_t = w0 z_t + w1 z_{t-1} + w2 z_{t-2}."""
    z1 = jnp.pad(z, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]
    z2 = jnp.pad(z, ((0, 0), (2, 0), (0, 0), (0, 0)))[:, :-2]
    return taps[:, 0] * z + taps[:, 1] * z1 + taps[:, 2] * z2


def multi_head_attention(p, x, dconv: bool):
    """p: the head subprogram's params, with a leading heads axis on every leaf."""
    heads, d, head_dim = p["h2_CONV_1X1"]["kernel"].shape
    # Fuse the per-head projections into the usual (d, d) matrices, then split by heads.
    def project(key):
        w = jnp.transpose(p[key]["kernel"], (1, 0, 2)).reshape(d, heads * head_dim)
        return (x @ w).reshape(x.shape[0], x.shape[1], heads, head_dim)  # (B, T, H, E)

    q, k, v = project("h2_CONV_1X1"), project("h3_CONV_1X1"), project("h4_CONV_1X1")
    if dconv:
        q = causal_depthwise_conv3(q, p["h5_DCONV_3X1"]["taps"])
        k = causal_depthwise_conv3(k, p["h6_DCONV_3X1"]["taps"])
        v = causal_depthwise_conv3(v, p["h7_DCONV_3X1"]["taps"])
    seq = x.shape[1]
    scores = jnp.einsum("bthe,bshe->bhts", q, k) / jnp.sqrt(head_dim)
    mask = jnp.tril(jnp.ones((seq, seq), bool))
    probs = jax.nn.softmax(jnp.where(mask, scores, -jnp.inf), axis=-1)
    out = jnp.einsum("bhts,bshe->bthe", probs, v)
    return out.reshape(x.shape[0], seq, heads * head_dim)


def transformer_block(params, x):
    h = x + multi_head_attention(params["h3_sub2"], layer_norm(params["h2_sub1"], x), False) \
        @ params["h4_CONV_1X1"]["kernel"]
    ff = jax.nn.relu(layer_norm(params["h6_sub1"], h) @ params["h7_CONV_1X1"]["kernel"])
    return h + ff @ params["h9_CONV_1X1"]["kernel"]


def primer_ez_block(params, x):
    h = x + multi_head_attention(params["h3_sub2"], layer_norm(params["h2_sub1"], x), True) \
        @ params["h4_CONV_1X1"]["kernel"]
    ff = jnp.square(jax.nn.relu(layer_norm(params["h6_sub1"], h) @ params["h7_CONV_1X1"]["kernel"]))
    return h + ff @ params["h10_CONV_1X1"]["kernel"]


REFERENCES = {"transformer": transformer_block, "primer_ez": primer_ez_block}
