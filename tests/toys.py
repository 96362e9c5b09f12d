"""What many tests build: config overrides over ``tiny_cpu``, and a store of finished
seed candidates.

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
:func:`seed_store` writes a store whose candidates are seed blocks with given fitnesses,
for tests of what reads a store (``top``, retraining, the ladder, the commands).
"""

from collections.abc import Sequence

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


def seed_store(path, overrides: Sequence[str] = TINY_TRAINING,
               candidates: Sequence[tuple[str, float]] = (("transformer", 900.0),
                                                          ("primer_ez", 800.0)),
               *, chain: bool = False):
    """Write a store of ``tiny_cpu`` with ``overrides`` at ``path`` holding ``candidates``
    (seed name, fitness) as finished candidates 1, 2, ... in order, each a one-stage
    ``ok`` result; ``chain``: each candidate a child of the one before. Returns ``path``."""
    from primer_search.fitness.results import EvalResult
    from primer_search.program import seeds
    from primer_search.program.validate import dna_hash
    from primer_search.search.config import config_to_dict, load_config
    from primer_search.search.store import Store

    with Store(path, config_to_dict(load_config("tiny_cpu", list(overrides)))) as store:
        parent = None
        for name, fitness in candidates:
            dna = seeds.get(name)
            cid = store.add(dna=dna, parent_id=parent if chain else None,
                            mutation=f"seed:{name}", dna_hash=dna_hash(dna))
            store.finish(cid, EvalResult(fitness=fitness, status="ok", stage_fitness=(fitness,)))
            parent = cid
    return path
