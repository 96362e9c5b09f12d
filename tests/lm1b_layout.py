"""A small corpus in the LM1B release layout, written from text the tests generate."""

import numpy as np

TRAIN = "training-monolingual.tokenized.shuffled"
HELDOUT = "heldout-monolingual.tokenized.shuffled"
WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "far", "and", "."]


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def make_lm1b_tree(parent, sentences_per_shard=120, marked=True):
    """An LM1B tree under ``parent``: three training shards, the held-out test shard,
    two validation shards and the release's decoy copy of a training shard. With
    ``marked``, each sentence starts with a word naming its file (``train2``, ``valid1``).
    Returns ``(parent, root, {shard number: lines}, {held-out file name: lines})``."""
    rng = np.random.default_rng(0)

    def sentences(prefix, n, rng):
        first = [prefix] if marked else []
        return [" ".join(first + list(rng.choice(WORDS, rng.integers(2, 9)))) for _ in range(n)]

    root = parent / "1-billion-word-language-modeling-benchmark-r13output"
    train = {k: sentences(f"train{k}", sentences_per_shard, rng) + ["omega heldoutword"]
             for k in (1, 2, 3)}
    for k, lines in train.items():
        write_lines(root / TRAIN / f"news.en-{k:05d}-of-00100", lines)
    heldout = {
        "news.en.heldout-00000-of-00050": ["omega omega test shard"] * 40,  # the test set
        "news.en.heldout-00001-of-00050": sentences("valid1", 30, rng),
        "news.en.heldout-00002-of-00050": sentences("valid2", 30, rng),
        "news.en-00000-of-00100": ["omega omega decoy"] * 200,  # the extra full copy
    }
    for name, lines in heldout.items():
        write_lines(root / HELDOUT / name, lines)
    return parent, root, train, heldout
