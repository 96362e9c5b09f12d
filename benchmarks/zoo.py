"""Seed zoo: every seed block trained for real on PTB, at equal steps and equal time.

Every architecture in ``primer_search.program.seeds.names()`` (or those named by ``--blocks``) is
trained with 3 seeds at the same step budget (``--steps``, default 300) and at the same
budget of seconds of training (``--seconds``, default 15; compile and evaluation
excluded), in the tiny CPU configuration of ``search_configs/tiny_cpu.toml`` (its
``fitness`` data and model settings: PTB, d_model 64, 2 layers, seq 64, batch 16, 8192
validation tokens). For each budget and block the table gives the parameter count, the
runs that succeeded out of those started, steps reached, step time (ms), tokens/s and
validation perplexity, mean +- std over the successful seeds. Every row is trained, none
is estimated; failed runs are reported on stderr (status and reason) and left out of the
means. A few minutes per block on a 2-core CPU with the defaults; ``--quick`` (5 steps,
1 s, 1 seed, 1024 validation tokens) is a smoke test.

The table is Markdown (aligned, so readable in a terminal and pasteable into a README);
``--json`` prints the config and the rows as JSON instead.

    python benchmarks/zoo.py [--json] [--quick] [--blocks transformer,primer_ez]
        [--steps 300] [--seconds 15] [--seeds 3] [--d-model 64] [--layers 2]
"""

from __future__ import annotations

import _seed_training
from _harness import fitness_settings


def main(argv=None):
    _seed_training.main(argv, doc=__doc__, base=fitness_settings("tiny_cpu", recall=False), blocks="",
                        steps=300, seconds=15.0, markdown=True,
                        columns=["budget", "block", "params", "runs", "steps", "step_ms",
                                 "tokens_per_s", "valid_ppl"])


if __name__ == "__main__":
    main()
