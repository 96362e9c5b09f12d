"""Fitness of the Transformer and Primer-EZ seeds on PTB, at equal steps and equal time.

Each seed block is trained with 3 seeds at the same step budget and at the same
wall-clock budget, in a tiny configuration that fits a 2-core CPU, and the table reports
mean +- std of validation perplexity, tokens/s and step time. The Primer paper found
Primer-EZ better than the Transformer at equal compute; this measures whether that holds
at this scale. ``benchmarks/zoo.py`` does the same for every seed in the library; both
share ``benchmarks/_seed_training.py``.

    python benchmarks/fitness.py [--json] [--quick] [--steps 300] [--seconds 30] [--seeds 3]
"""

from __future__ import annotations

import _seed_training
from _seed_training import fmt  # noqa: F401 - part of this script's interface

from primer_search.fitness.config import FitnessConfig, ModelConfig
from primer_search.fitness.data import DataConfig

# PTB at DataConfig's defaults (eval_tokens 16384), a 128-wide 2-layer model.
BASE = FitnessConfig(data=DataConfig(seq_len=64, batch_size=16),
                     model=ModelConfig(d_model=128, num_layers=2))


def run(blocks, budgets, num_seeds, d_model, layers, seq_len, batch_size):
    """Rows of :func:`_seed_training.run` for this script's model settings."""
    base = FitnessConfig(data=DataConfig(seq_len=seq_len, batch_size=batch_size),
                         model=ModelConfig(d_model=d_model, num_layers=layers))
    return _seed_training.run(base, blocks, budgets, num_seeds)


def main(argv=None):
    _seed_training.main(argv, doc=__doc__, base=BASE, blocks="transformer,primer_ez", steps=300,
                        seconds=30.0, columns=["budget", "block", "params", "steps", "valid_ppl",
                                               "tokens_per_s", "step_ms"], markdown=False)


if __name__ == "__main__":
    main()
