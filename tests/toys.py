"""Config overrides the tests share, over ``tiny_cpu``.

- :data:`TINY_TRAINING`: candidates that really train, at the smallest size that still
  runs every part (1 layer of width 16, 16-token rows, 4 steps, a small recall
  evaluation), so a test that trains pays seconds, not minutes. The budget's steps are
  set because the recall task trains the config's own budget (``tiny_cpu``'s 100 steps)
  beside every run, a retraining's too.
- :data:`TOY`: the toy evaluator (no training; fitness is a function of the program),
  one stage, for tests of the search machinery.
- :data:`TOY_LOOP`: the toy evaluator with a population small enough that a few dozen
  candidates take the loop through seeding, tournaments and mutation.

A test adds its own overrides after these; a later override of the same key wins.
"""

TINY_TRAINING = ["fitness.model.d_model=16", "fitness.model.num_layers=1",
                 "fitness.data.seq_len=16", "fitness.data.batch_size=4",
                 "fitness.data.eval_tokens=256", "fitness.budget.stages=1",
                 "fitness.budget.steps=4", "fitness.recall.eval_sequences=16"]

TOY = ["evaluator='toy'", "fitness.budget.stages=1"]

TOY_LOOP = TOY + ["limits.keep_weights=0", "fitness.model.d_model=16",
                  "evolution.population_size=8", "evolution.tournament_size=3"]


def as_flags(overrides: list[str]) -> list[str]:
    """``overrides`` as command-line flags: ``--set KEY=VALUE`` each."""
    return [x for o in overrides for x in ("--set", o)]
