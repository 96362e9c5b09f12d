"""Final selection: retraining the top candidates records per-seed rows and ranks them."""

import math

from primer_search.cli import main
from primer_search.fitness.results import EvalResult
from primer_search.program import seeds
from primer_search.program.validate import dna_hash
from primer_search.retrain import retrain
from primer_search.search.config import config_to_dict, load_config
from primer_search.search.store import Store

TINY = ["fitness.model.d_model=16", "fitness.model.num_layers=1", "fitness.data.seq_len=16",
        "fitness.data.batch_size=4", "fitness.data.eval_tokens=256", "fitness.budget.stages=1"]


def test_retrain_top_k_with_seeds_and_resume(tmp_path, capsys):
    path = tmp_path / "r.sqlite"
    cfg = load_config("tiny_cpu", TINY)
    with Store(path, config_to_dict(cfg)) as store:
        for name, fitness in (("transformer", 900.0), ("primer_ez", 800.0)):
            dna = seeds.get(name)
            cid = store.add(dna=dna, parent_id=None, mutation=f"seed:{name}", dna_hash=dna_hash(dna))
            store.finish(cid, EvalResult(fitness=fitness, status="ok", stage_fitness=(fitness,)))
        bad = store.add(dna=dna, parent_id=None, mutation="x", dna_hash=dna_hash(dna))
        store.finish(bad, EvalResult(fitness=math.inf, status="nan"))
    rows = retrain(path, top=2, seeds=2, steps=4)
    assert [r["runs"] for r in rows] == [2, 2]
    assert {r["id"] for r in rows} == {1, 2}
    assert all(math.isfinite(r["mean_fitness"]) for r in rows)
    with Store(path, readonly=True) as store:
        runs = store.finished(kind="retrain")
        assert len(runs) == 4 and {c.seed for c in runs} == {0, 1}
        assert all(c.result.steps == 4 for c in runs)
        assert store.count(kind="search") == 3  # retraining adds no search candidates
    # Nothing is trained twice: a second call finds every (candidate, seed) done.
    assert retrain(path, top=2, seeds=2, steps=4) == rows
    with Store(path, readonly=True) as store:
        assert len(store.finished(kind="retrain")) == 4
    assert main(["top", str(path), "--retrained"]) == 0
    assert "mean fitness" in capsys.readouterr().out
