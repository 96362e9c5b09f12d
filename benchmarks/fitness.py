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
from _harness import fitness_settings

# tiny_cpu's data (PTB, seq 64, batch 16) with 16384 validation tokens and a 128-wide
# 2-layer model.
BASE = fitness_settings("tiny_cpu", ["fitness.model.d_model=128",
                                     "fitness.data.eval_tokens=16384"], recall=False)


def main(argv=None):
    _seed_training.main(argv, doc=__doc__, base=BASE, blocks="transformer,primer_ez", steps=300,
                        seconds=30.0, columns=["budget", "block", "params", "steps", "valid_ppl",
                                               "tokens_per_s", "step_ms"], markdown=False)


if __name__ == "__main__":
    main()
