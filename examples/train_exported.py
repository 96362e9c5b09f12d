"""Train an exported block with plain Flax and optax: no primer-search needed.

    primer-search export --dna seeds:primer_ez --d-model 64 --out exported/
    python examples/train_exported.py exported/ --steps 100

Trains the exported LanguageModel on a small synthetic task (each sequence counts up by a
random stride, modulo the vocabulary: learnable, so the loss must go down) and prints the
loss as it goes. Replace `batches()` with your own data.
"""

import argparse
import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax


def load_module(folder: Path):
    spec = importlib.util.spec_from_file_location("exported_block", folder / "block.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batches(vocab: int, batch: int, seq: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    while True:
        start = rng.integers(0, vocab, (batch, 1))
        stride = rng.integers(1, 4, (batch, 1))
        yield ((start + stride * np.arange(seq + 1)) % vocab).astype(np.int32)


def main(argv=None) -> list[float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--vocab", type=int, default=64)
    args = p.parse_args(argv)
    block = load_module(args.folder)
    model = block.LanguageModel(vocab_size=args.vocab, num_layers=2)
    data = batches(args.vocab, batch=16, seq=32)
    params = model.init(jax.random.key(0), next(data)[:, :-1])
    optimizer = optax.adamw(3e-3)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        def loss_fn(p):
            logits = model.apply(p, batch[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i in range(args.steps):
        params, opt_state, loss = step(params, opt_state, jnp.asarray(next(data)))
        losses.append(float(loss))
        if i % 10 == 0 or i == args.steps - 1:
            print(f"step {i:4d}  loss {losses[-1]:.4f}")
    return losses


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
