"""Hand-written JAX decoder blocks, written from the formulas, for equivalence tests.

Each takes the parameter tree that ``compile_block`` builds for the matching seed (so the
weights are the same) and computes the block the usual way: fused matrices reshaped into
heads, ``jax.nn.softmax`` with a causal mask, ``jax.nn.relu``/``gelu``/``silu``, textbook
norms. Where the seed uses a mechanism of its own, the reference computes it another way
than the program does: FAVOR+ by prefix sums of outer products (the linear-time form),
RWKV's WKV from its weight formula position by position, the long convolution as a
Toeplitz matrix, a Monarch matrix from explicit block-diagonal and permutation matrices.
"""

import jax
import jax.numpy as jnp
import numpy as np

from primitives.extended import orthogonal_features


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


def rms_norm(p, x, eps=1e-6):
    return x / jnp.sqrt(jnp.square(x).mean(-1, keepdims=True) + eps) * p["h7_SCALE"]["scale"]


def primer_norm(p, x, eps=1e-6):
    """Primer's released primer_norm: the pseudo-variance mean(x * (x - mean))."""
    centred = x - x.mean(-1, keepdims=True)
    pseudo_var = (x * centred).mean(-1, keepdims=True)
    return centred / jnp.sqrt(pseudo_var + eps) * p["h9_SCALE"]["scale"] + p["h10_SHIFT"]["shift"]


def gelu(z):
    return jax.nn.gelu(z, approximate=True)


def kernel(params, key):
    return params[key]["kernel"]


def attention_sublayer(params, x, norm=layer_norm):
    return x + multi_head_attention(params["h3_sub2"], norm(params["h2_sub1"], x), False) \
        @ kernel(params, "h4_CONV_1X1")


def transformer_gelu_block(params, x):
    h = attention_sublayer(params, x)
    ff = gelu(layer_norm(params["h6_sub1"], h) @ kernel(params, "h7_CONV_1X1"))
    return h + ff @ kernel(params, "h9_CONV_1X1")


def glu_block(activation, norm=layer_norm):
    """A Transformer with the FFN W2 (act(x W) * x V); ``activation=None`` is Bilinear."""
    out_key = "h10_CONV_1X1" if activation is None else "h11_CONV_1X1"

    def block(params, x):
        h = attention_sublayer(params, x, norm)
        n = norm(params["h6_sub1"], h)
        gate = n @ kernel(params, "h7_CONV_1X1")
        if activation is not None:
            gate = activation(gate)
        return h + (gate * (n @ kernel(params, "h8_CONV_1X1"))) @ kernel(params, out_key)

    return block


def heads_view(x, w):
    """x (B, T, d) through per-head kernels w (H, d, e) -> (B, T, H, e)."""
    return jnp.einsum("btd,hde->bthe", x, w)


def softmax_attention(q, k, v, bias=None):
    """Causal softmax attention over (B, T, H, E) heads -> (B, T, H * E)."""
    seq, head_dim = q.shape[1], q.shape[-1]
    scores = jnp.einsum("bthe,bshe->bhts", q, k) / jnp.sqrt(head_dim)
    if bias is not None:
        scores = scores + bias
    mask = jnp.tril(jnp.ones((seq, seq), bool))
    probs = jax.nn.softmax(jnp.where(mask, scores, -jnp.inf), axis=-1)
    out = jnp.einsum("bhts,bshe->bthe", probs, v)
    return out.reshape(q.shape[0], seq, -1)


def primer_block(params, x):
    """Shared QK: K = DConv(x W_k), Q = K W_q (per head); pre-norm attention, post-norm FFN."""
    p = params["h3_sub2"]
    xn = primer_norm(params["h2_sub1"], x)
    k = causal_depthwise_conv3(heads_view(xn, p["h2_CONV_1X1"]["kernel"]), p["h3_DCONV_3X1"]["taps"])
    q = jnp.einsum("bthe,hef->bthf", k, p["h4_CONV_1X1"]["kernel"])
    v = causal_depthwise_conv3(heads_view(xn, p["h5_CONV_1X1"]["kernel"]), p["h6_DCONV_3X1"]["taps"])
    h = x + softmax_attention(q, k, v) @ kernel(params, "h4_CONV_1X1")
    ff = jnp.square(jax.nn.relu(h @ kernel(params, "h6_CONV_1X1"))) @ kernel(params, "h9_CONV_1X1")
    return h + primer_norm(params["h10_sub1"], ff)


def favor_features(x, omega):
    """phi(x) = exp(omega^T x' - |x'|^2 / 2) / sqrt(m), x' = x d^(-1/4); x (B, T, H, d)."""
    d, m = omega.shape
    xs = x * d ** -0.25
    return jnp.exp(xs @ omega - 0.5 * jnp.sum(xs * xs, -1, keepdims=True)) / np.sqrt(m)


def performer_block(params, x):
    """FAVOR+ in its linear-time causal form: prefix sums of phi(k) v^T and phi(k)."""
    p = params["h3_sub2"]
    xn = layer_norm(params["h2_sub1"], x)
    q, k, v = (heads_view(xn, p[f"h{i}_CONV_1X1"]["kernel"]) for i in (2, 3, 4))
    head_dim = q.shape[-1]
    omega = jnp.asarray(orthogonal_features(head_dim, 4 * head_dim, 1.0))
    fq, fk = favor_features(q, omega), favor_features(k, omega)  # (B, T, H, m)
    kv = jnp.cumsum(jnp.einsum("bthm,bthe->bthme", fk, v), axis=1)
    z = jnp.cumsum(fk, axis=1)
    out = jnp.einsum("bthm,bthme->bthe", fq, kv) / jnp.einsum("bthm,bthm->bth", fq, z)[..., None]
    h = x + out.reshape(x.shape) @ kernel(params, "h4_CONV_1X1")
    ff = jax.nn.relu(layer_norm(params["h6_sub1"], h) @ kernel(params, "h7_CONV_1X1"))
    return h + ff @ kernel(params, "h9_CONV_1X1")


def token_shift(x, g):
    """mu x_t + (1 - mu) x_{t-1} with mu = 0.5 g."""
    prev = jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    mu = 0.5 * g
    return mu * x + (1 - mu) * prev


def rwkv_block(params, x):
    """RWKV-4 time mixing (WKV from its weight formula) and channel mixing."""
    xn = layer_norm(params["h2_sub1"], x)
    r, k, v = (token_shift(xn, params[f"h{i}_SCALE"]["scale"]) @ kernel(params, f"h{j}_CONV_1X1")
               for i, j in ((6, 12), (8, 13), (10, 14)))
    w = jnp.exp(params["h16_SHIFT"]["shift"] - 1.0)  # per-channel decay > 0
    u = params["h20_SHIFT"]["shift"]
    seq = x.shape[1]
    t = jnp.arange(seq)[:, None, None]
    i = jnp.arange(seq)[None, :, None]
    # weight[b, t, i, c] = e^{-(t-1-i) w + k_i} for i < t, e^{u + k_t} for i = t, else 0.
    past = jnp.exp(-(t - 1 - i) * w + k[:, None, :, :])
    now = jnp.exp(u + k)[:, :, None, :] * jnp.eye(seq)[None, :, :, None]
    weight = jnp.where(i < t, past, 0.0) + now
    wkv = jnp.einsum("btic,bic->btc", weight, v) / weight.sum(2)
    h = x + (jax.nn.sigmoid(r) * wkv) @ kernel(params, "h33_CONV_1X1")
    hn = layer_norm(params["h35_sub1"], h)
    xk = token_shift(hn, params["h39_SCALE"]["scale"])
    xr = token_shift(hn, params["h41_SCALE"]["scale"])
    kv = jnp.square(jax.nn.relu(xk @ kernel(params, "h43_CONV_1X1"))) @ kernel(params, "h46_CONV_1X1")
    return h + jax.nn.sigmoid(xr @ kernel(params, "h47_CONV_1X1")) * kv


def block_diagonal(blocks):
    rows = [jnp.concatenate([blocks[j] if j == i else jnp.zeros((blocks.shape[1], blocks.shape[2]))
                             for j in range(blocks.shape[0])], axis=1) for i in range(blocks.shape[0])]
    return jnp.concatenate(rows, axis=0)


def stride_permutation(rows, cols):
    """The matrix of reshape (rows, cols) -> transpose -> flatten, acting on row vectors."""
    perm = np.zeros((rows * cols, rows * cols), np.float32)
    for i in range(rows):
        for j in range(cols):
            perm[i * cols + j, j * rows + i] = 1.0
    return jnp.asarray(perm)


def monarch_matrix(p, in_width, out_width):
    """Dense (in, out) matrix of P L P^T R, for row vectors: x R P1 L P2."""
    r, l_ = p["kernel_r"], p["kernel_l"]
    b, q = r.shape[0], r.shape[2]
    m = block_diagonal(r) @ stride_permutation(b, q) @ block_diagonal(l_) \
        @ stride_permutation(b, l_.shape[2])
    return m[:in_width, :out_width]


def long_conv_reference(p, x):
    """Causal depthwise convolution with h(tau) = sum_n a_n sqrt(1 - e^{-2 l_n})
    e^{-l_n tau} cos(f_n tau), as a Toeplitz matrix per channel."""
    seq = x.shape[1]
    tau = jnp.arange(seq, dtype=jnp.float32)
    lam = jnp.exp(p["log_decay"])[:, None, :]  # (N, 1, C)
    gain = p["amplitude"][:, None, :] * jnp.sqrt(1 - jnp.exp(-2 * lam))
    h = (gain * jnp.exp(-lam * tau[None, :, None]) * jnp.cos(p["frequency"][:, None, :]
                                                               * tau[None, :, None])).sum(0)
    lag = jnp.arange(seq)[:, None] - jnp.arange(seq)[None, :]  # t - s
    toeplitz = jnp.where(lag[..., None] >= 0, h[jnp.clip(lag, 0)], 0.0)  # (T, S, C)
    return jnp.einsum("tsc,bsc->btc", toeplitz, x)


def depthwise_conv3(z, taps):
    """z (B, T, C), taps (3, C): w0 z_t + w1 z_{t-1} + w2 z_{t-2}."""
    return causal_depthwise_conv3(z[:, :, None, :], taps[None])[:, :, 0, :]


def monarch_mixer_block(params, x):
    d = x.shape[-1]
    u = layer_norm(params["h2_sub1"], x)
    q, k, v = (depthwise_conv3(u @ kernel(params, f"h{i}_CONV_1X1"), params[f"h{i + 1}_DCONV_3X1"]["taps"])
               for i in (3, 5, 7))
    y = q * long_conv_reference(params["h10_LONG_CONV"], k * v)
    h = x + y @ kernel(params, "h12_CONV_1X1")
    hn = layer_norm(params["h14_sub1"], h)
    m1 = monarch_matrix(params["h15_MONARCH"], d, 4 * d)
    m2 = monarch_matrix(params["h17_MONARCH"], 4 * d, d)
    return h + gelu(hn @ m1) @ m2


def pangu_pi_block(params, x):
    """Augmented shortcut GELU(x Theta) beside attention; series activation in the FFN."""
    attn = multi_head_attention(params["h3_sub2"], layer_norm(params["h2_sub1"], x), False)
    h = x + attn @ kernel(params, "h6_CONV_1X1") + gelu(x @ kernel(params, "h4_CONV_1X1"))
    z = layer_norm(params["h9_sub1"], h) @ kernel(params, "h10_CONV_1X1")
    series = 0.0
    for offset, (b, a) in zip((-1.0, 0.0, 1.0), ((12, 15), (16, 19), (21, 24))):
        bias = offset + params[f"h{b}_SHIFT"]["shift"]
        series = series + params[f"h{a}_SCALE"]["scale"] / 3 * gelu(z + bias)
    return h + series @ kernel(params, "h27_CONV_1X1")


def alibi_glu_block(params, x):
    """Four ALiBi heads (slopes 2^-2, 2^-4, 2^-6, 2^-8) and a GEGLU FFN."""
    xn = layer_norm(params["h2_sub1"], x)
    seq = x.shape[1]
    distance = jnp.arange(seq)[:, None] - jnp.arange(seq)[None, :]
    heads = [("h3_sub2", "h4_CONV_1X1"), ("h5_sub3", "h6_CONV_1X1"), ("h8_sub4", "h9_CONV_1X1"),
             ("h11_sub5", "h12_CONV_1X1")]
    slopes = [2.0 ** (-8 * h / 4) for h in range(1, 5)]
    outs, w_o = [], []
    for (head, out), slope in zip(heads, slopes):
        p = params[head]
        q, k, v = (xn @ p[f"h{i}_CONV_1X1"]["kernel"] for i in (2, 3, 4))
        outs.append(softmax_attention(q[:, :, None], k[:, :, None], v[:, :, None], -slope * distance))
        w_o.append(kernel(params, out))
    # Concatenated heads times the stacked output projections: the usual MHA output.
    h = x + jnp.concatenate(outs, -1) @ jnp.concatenate(w_o, 0)
    n = layer_norm(params["h15_sub1"], h)
    ff = gelu(n @ kernel(params, "h16_CONV_1X1")) * (n @ kernel(params, "h17_CONV_1X1"))
    return h + ff @ kernel(params, "h20_CONV_1X1")


REFERENCES = {
    "transformer": transformer_block,
    "primer_ez": primer_ez_block,
    "transformer_gelu": transformer_gelu_block,
    "transformer_pp": glu_block(jax.nn.silu, rms_norm),
    "glu": glu_block(jax.nn.sigmoid),
    "bilinear": glu_block(None),
    "reglu": glu_block(jax.nn.relu),
    "geglu": glu_block(gelu),
    "swiglu": glu_block(jax.nn.silu),
    "primer": primer_block,
    "performer": performer_block,
    "rwkv": rwkv_block,
    "monarch_mixer": monarch_mixer_block,
    "pangu_pi": pangu_pi_block,
    "alibi_glu": alibi_glu_block,
}
