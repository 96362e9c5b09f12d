"""Final selection up a ladder: successive halving over rungs of larger settings, every
run kept by candidate, rung and seed, a climb that resumes, and rungs that really train
under their own settings."""

import dataclasses
import math

import pytest
from toys import TINY_TRAINING, seed_store

from primer_search.cli import main
from primer_search.fitness.results import EvalResult, Status
from primer_search.program import seeds
from primer_search.program.mutations import mutate
from primer_search.program.validate import dna_hash
from primer_search.retrain import climb_ladder
from primer_search.search.config import ConfigError, load_config
from primer_search.search.ladder import LadderConfig, Rung, ladder_results, promote
from primer_search.search.pool import Done
from primer_search.search.store import Store


def test_promote_ranks_by_mean_over_seeds_and_never_promotes_a_failure():
    results = {"a": [3.0, 5.0], "b": [4.0, 4.0], "c": [1.0, math.inf], "d": [2.0, 9.0]}
    # a and b tie on 4.0: the entry order breaks it; c failed a run.
    assert promote(results, 3, order=["b", "a", "c", "d"]) == ["b", "a", "d"]
    assert promote(results, 3, order=["a", "b", "c", "d"]) == ["a", "b", "d"]
    assert promote(results, 10, order=list(results)) == ["a", "b", "d"]


def test_a_ladder_that_grows_is_refused_with_the_rungs_named():
    with pytest.raises(ConfigError, match="ladder rung 'big' trains 4 candidates, more than "
                                          "the 2 of the rung below \\('small'\\)"):
        load_config("tiny_cpu", ['ladder.rungs=[{name="small", candidates=2}, '
                                 '{name="big", candidates=4}]'])
    with pytest.raises(ConfigError, match=r"ladder rung 'x': fitness: unknown key "
                                          r"'fitness.model.widht'"):
        load_config("tiny_cpu", ['ladder.rungs=[{name="x", candidates=2, '
                                 'fitness={model={widht=2}}}]'])
    with pytest.raises(ConfigError, match=r"unknown key 'ladder.rungs\[0\].seed' \(did you "
                                          r"mean 'ladder.rungs\[0\].seeds'\?\)"):
        load_config("tiny_cpu", ['ladder.rungs=[{name="x", candidates=2, seed=3}]'])


def _store(path, ladder_overrides=(), n=8):
    """Candidates 1, 2: the seed copies (search fitness 50, 60); 3 .. n: children of the
    Transformer with search fitness 3 .. n (3 best)."""
    import random

    store = Store(seed_store(path, [*TINY_TRAINING, *ladder_overrides],
                             [("transformer", 50.0), ("primer_ez", 60.0)]))
    rng = random.Random(0)
    seen = {dna_hash(seeds.get("transformer")), dna_hash(seeds.get("primer_ez"))}
    while store.count() < n:
        dna, how = mutate(seeds.get("transformer"), rng)
        if dna_hash(dna) in seen:
            continue
        seen.add(dna_hash(dna))
        cid = store.add(dna=dna, parent_id=1, mutation=how, dna_hash=dna_hash(dna))
        fit = float(store.count())
        store.finish(cid, EvalResult(fitness=fit, status="ok", stage_fitness=(fit,)))
    return store


class ScriptedRung:
    """A pool whose results are ``score(candidate id, rung steps, seed)``: it looks up
    each job's candidate (the retrain row's parent) in the store."""

    size = 2

    def __init__(self, path, steps, score, log, stop_after=None):
        self.path, self.steps, self.score, self.log = path, steps, score, log
        self.running = {}
        self.stop_after = stop_after

    def available(self, slot):
        return True

    def submit(self, slot, job):
        self.running[slot] = job

    def wait(self, timeout_s):
        if self.stop_after is not None:
            if self.stop_after <= 0:
                raise KeyboardInterrupt
            self.stop_after -= 1
        out = []
        with Store(self.path, readonly=True) as store:
            for slot, job in list(self.running.items()):
                del self.running[slot]
                cand = store.get(job.cid).parent_id
                self.log.append((self.steps, cand, job.seed))
                fit = self.score(cand, self.steps, job.seed)
                out.append((slot, Done(job.cid, EvalResult(
                    fitness=fit, status="ok", steps=self.steps, perplexity=fit,
                    stage_fitness=(fit,)))))
        return out

    def replace(self, slot):
        self.running.pop(slot, None)

    def close(self):
        pass


LADDER = ['ladder.rungs=[{name="wide", candidates=4, seeds=2, fitness={budget={steps=10}}}, '
          '{name="long", candidates=2, seeds=2, fitness={budget={steps=20}}}]']


def score(cand, steps, seed):
    # Rung 1 reverses the search's order (6 best of 3..6); rung 2 restores it (5 beats 6);
    # the seed copies sit in the middle; seed 1 is a little worse than seed 0.
    if cand in (1, 2):
        return 100.0 + cand + seed
    return (20.0 - cand if steps == 10 else float(cand)) + 0.1 * seed


def test_climb_halves_up_the_rungs_and_keeps_every_run(tmp_path, capsys):
    path = tmp_path / "l.sqlite"
    _store(path, LADDER).close()
    log = []
    climbed = climb_ladder(path, pool_for=lambda cfg, t: ScriptedRung(
        path, cfg.fitness.budget.steps, score, log))
    first, second = climbed
    # The seed copies (1, 2) climb beside the entrants and are not counted.
    assert first["entrants"] == [3, 4, 5, 6] and first["seed_copies"] == [1, 2]
    assert set(first["candidates"]) == {1, 2, 3, 4, 5, 6}
    assert first["promoted"] == [6, 5]
    assert second["entrants"] == [6, 5] and set(second["candidates"]) == {1, 2, 5, 6}
    assert second["promoted"] == [5]                        # the winner
    assert first["candidates"][6]["fitnesses"] == [14.0, 14.1]
    assert first["candidates"][6]["mean_fitness"] == pytest.approx(14.05)
    assert sorted(log) == sorted([(10, c, s) for c in (1, 2, 3, 4, 5, 6) for s in (0, 1)]
                                 + [(20, c, s) for c in (1, 2, 5, 6) for s in (0, 1)])
    with Store(path, readonly=True) as store:
        runs = store.finished(kind="retrain")
        assert len(runs) == 12 + 8
        assert {store.retrain_budget(r.id) for r in runs} == {"rung 1: wide", "rung 2: long"}
        assert store.count(kind="search") == 8
        assert [r["label"] for r in ladder_results(store)] == ["rung 1: wide", "rung 2: long"]
    # Climbing again trains nothing.
    log.clear()
    again = climb_ladder(path, pool_for=lambda cfg, t: ScriptedRung(
        path, cfg.fitness.budget.steps, score, log))
    assert log == [] and again[-1]["promoted"] == [5]
    # top --ladder shows every rung by candidate; show names a candidate's rungs.
    assert main(["top", str(path), "--ladder"]) == 0
    out = capsys.readouterr().out
    assert "rung 1: wide" in out and "rung 2: long" in out and "14.05" in out
    assert main(["show", str(path), "5"]) == 0
    out = capsys.readouterr().out
    assert "rung 1: wide" in out and "rung 2: long" in out


def test_a_rung_whose_settings_changed_is_refused_not_found_done(tmp_path):
    """A rung's runs are found by its label; after its settings are edited under the same
    name, the old runs would count as done at the new setting. The climb refuses, names
    what changed, and trains nothing; under a new name the rung trains anew."""
    path = tmp_path / "l.sqlite"
    _store(path, LADDER).close()
    log = []
    climb_ladder(path, pool_for=lambda cfg, t: ScriptedRung(
        path, cfg.fitness.budget.steps, score, log))
    edited = LadderConfig(rungs=(
        Rung(name="wide", candidates=4, seeds=2, fitness={"budget": {"steps": 10}}),
        Rung(name="long", candidates=2, seeds=2, fitness={"budget": {"steps": 30}})))
    log.clear()
    with pytest.raises(ValueError, match=r"'rung 2: long': its runs in .* trained under other "
                                         r"settings \(fitness.budget.steps: 20 -> 30\); give "
                                         r"the rung a new name"):
        climb_ladder(path, edited, pool_for=lambda cfg, t: ScriptedRung(
            path, cfg.fitness.budget.steps, score, log))
    assert log == []
    renamed = dataclasses.replace(edited, rungs=(
        edited.rungs[0], dataclasses.replace(edited.rungs[1], name="longer")))
    climbed = climb_ladder(path, renamed, pool_for=lambda cfg, t: ScriptedRung(
        path, cfg.fitness.budget.steps, score, log))
    assert sorted(log) == sorted((30, c, s) for c in (1, 2, 5, 6) for s in (0, 1))
    assert climbed[-1]["label"] == "rung 2: longer"
    # The store keeps both settings of rung 2, and top / show list each.
    with Store(path, readonly=True) as store:
        rungs = ladder_results(store)
    assert [r["label"] for r in rungs] == ["rung 1: wide", "rung 2: long", "rung 2: longer"]
    assert rungs[1]["candidates"][5]["fitnesses"] == [5.0, 5.1]
    assert rungs[2]["candidates"][5]["fitnesses"] == [5.0, 5.1]


def test_an_interrupted_climb_finishes_only_what_is_missing(tmp_path):
    path = tmp_path / "l.sqlite"
    _store(path, LADDER).close()
    log = []
    with pytest.raises(KeyboardInterrupt):
        climb_ladder(path, pool_for=lambda cfg, t: ScriptedRung(
            path, cfg.fitness.budget.steps, score, log, stop_after=3))
    before = list(log)
    assert 0 < len(before) < 12
    log.clear()
    climbed = climb_ladder(path, pool_for=lambda cfg, t: ScriptedRung(
        path, cfg.fitness.budget.steps, score, log))
    assert not set(log) & set(before), "a finished run was trained again"
    assert len(before) + len(log) == 20 and climbed[-1]["promoted"] == [5]


def test_a_store_without_a_ladder_says_how_to_give_one(tmp_path):
    path = tmp_path / "l.sqlite"
    _store(path).close()
    with pytest.raises(ValueError, match="has no ladder"):
        climb_ladder(path)
    assert main(["retrain", str(path), "--ladder"]) == 1


def test_rungs_train_under_their_own_settings(tmp_path):
    # Real training: rung 2 is twice as wide, sees twice the context and trains twice as
    # long.
    path = tmp_path / "l.sqlite"
    _store(path, n=3).close()
    ladder = LadderConfig(rungs=(
        Rung("same", candidates=1, seeds=1),
        Rung("2x width", candidates=1, seeds=1, fitness={
            "model": {"d_model": 32}, "budget": {"steps": 8}, "data": {"seq_len": 32}})),
        include_seeds=False)
    climbed = climb_ladder(path, ladder)
    with Store(path, readonly=True) as store:
        runs = {store.retrain_budget(r.id): r.result for r in store.finished(kind="retrain")}
    small, large = runs["rung 1: same"], runs["rung 2: 2x width"]
    assert small.status == large.status == Status.OK
    assert (small.steps, large.steps) == (4, 8)
    assert large.num_params > small.num_params
    assert large.tokens_per_s > 0 and math.isfinite(large.perplexity)
    assert climbed[0]["entrants"] == [3] and climbed[1]["promoted"] == [3]
