"""Final selection: retraining the top candidates records per-seed rows and ranks them."""

import math

from toys import seed_store

from primer_search.cli import main
from primer_search.fitness.results import EvalResult
from primer_search.program import seeds
from primer_search.program.validate import dna_hash
from primer_search.retrain import retrain
from primer_search.search.store import Store


def _seeded_store(path) -> Store:
    """A tiny_cpu store (tiny training settings) holding the two seeds as finished
    candidates 1, 2, open."""
    return Store(seed_store(path))


def test_retrain_top_k_with_seeds_and_resume(tmp_path, capsys):
    path = tmp_path / "r.sqlite"
    with _seeded_store(path) as store:
        dna = store.get(2).dna  # a failed copy of primer_ez
        bad = store.add(dna=dna, parent_id=None, mutation="x", dna_hash=dna_hash(dna))
        store.finish(bad, EvalResult(fitness=math.inf, status="nan"))
    rows = retrain(path, top=2, seeds=2, steps=4)
    assert [r.runs for r in rows] == [2, 2]
    assert {r.id for r in rows} == {1, 2}
    assert all(math.isfinite(r.mean_fitness) for r in rows)
    assert {r.budget for r in rows} == {"4 steps"}
    with Store(path, readonly=True) as store:
        runs = store.finished(kind="retrain")
        assert len(runs) == 4 and {c.seed for c in runs} == {0, 1}
        assert all(c.result.steps == 4 for c in runs)
        assert store.count(kind="search") == 3  # retraining adds no search candidates
    # Nothing is trained twice: a second call finds every (candidate, seed) done.
    assert retrain(path, top=2, seeds=2, steps=4) == rows
    with Store(path, readonly=True) as store:
        assert len(store.finished(kind="retrain")) == 4
    # A longer budget is new work, not "already done"; the shorter runs are kept.
    longer = retrain(path, top=2, seeds=2, steps=6)
    assert [r.runs for r in longer] == [2, 2] and {r.budget for r in longer} == {"6 steps"}
    with Store(path, readonly=True) as store:
        runs = store.finished(kind="retrain")
        assert sorted(c.result.steps for c in runs) == [4] * 4 + [6] * 4
        assert {budget for _, budget, _ in store.retrain_runs()} == {"4 steps", "6 steps"}
    assert retrain(path, top=2, seeds=2, steps=4) == rows
    assert main(["top", str(path), "--retrained"]) == 0
    out = capsys.readouterr().out
    assert "mean fitness" in out and "6 steps" in out and "4 steps" in out


class _FlakyPool:
    """Two slots; a job's worker dies as often as ``deaths`` says, and a job named in
    ``crash`` raises in the evaluator (a Lost that is not a worker death)."""

    size = 2

    def __init__(self, deaths: dict[int, int], crash=()):
        self.deaths, self.crash = dict(deaths), set(crash)
        self.running: dict[int, object] = {}
        self.submitted: list[tuple[int, int, object]] = []

    def available(self, slot):
        return True

    def submit(self, slot, job):
        assert slot not in self.running, "a busy slot was given a second job"
        self.running[slot] = job
        self.submitted.append((job.cid, job.seed, job.budget))

    def wait(self, timeout_s):
        from primer_search.search.pool import Done, Lost

        out = []
        for slot, job in sorted(self.running.items()):
            if self.deaths.get(job.cid, 0) > 0:
                self.deaths[job.cid] -= 1
                out.append((slot, Lost(job.cid, "node removed", worker_died=True)))
            elif job.cid in self.crash:
                out.append((slot, Lost(job.cid, "ValueError: bug", worker_died=False)))
            else:
                out.append((slot, Done(job.cid, EvalResult(fitness=10.0 + job.seed, status="ok"))))
        self.running.clear()
        return out


def test_run_jobs_keeps_slots_busy_retries_dead_workers_and_records_bugs():
    from primer_search.fitness.config import BudgetConfig
    from primer_search.search.dispatch import run_jobs
    from primer_search.search.pool import Job

    budget = BudgetConfig(steps=30, stages=3, pass_rate=1.0)
    dna = seeds.get("transformer")
    jobs = [Job(cid, dna, seed=cid % 2, budget=budget) for cid in range(5)]
    pool = _FlakyPool(deaths={1: 1, 2: 5}, crash={3})
    seen = []
    out = run_jobs(pool, jobs, on_done=lambda job, done: seen.append(job.cid), max_retries=1)
    assert sorted(out) == [0, 1, 2, 3, 4] and sorted(seen) == [0, 1, 2, 3, 4]
    assert out[1].result.status == "ok"                  # died once, retried, trained
    assert out[2].result.status == "error"               # died past its retries
    assert "node removed" in out[2].result.reason
    assert out[3].result.status == "error" and "bug" in out[3].result.reason
    assert out[4].result.fitness == 10.0                 # seed 0 reached the evaluator
    assert all(b is budget for _, _, b in pool.submitted)
    assert [c for c, _, _ in pool.submitted].count(2) == 2  # first try and one retry


def test_retrain_on_ray_workers(tmp_path):
    """``retrain --workers 2``: the runs go to Ray actors (each answers with its pid),
    not to this process, and land in the store like in-process ones."""
    path = tmp_path / "r.sqlite"
    _seeded_store(path).close()
    import ray

    try:
        rows = retrain(path, top=2, seeds=1, steps=3, workers=2)
    finally:
        ray.shutdown()  # the next test module starts its own
    assert [r.runs for r in rows] == [1, 1]
    with Store(path, readonly=True) as store:
        runs = store.finished(kind="retrain")
    assert all(math.isfinite(c.fitness) and c.result.steps == 3 for c in runs)
    assert all("/pid" in c.worker and c.worker.startswith("worker") for c in runs), \
        [c.worker for c in runs]


def test_retrained_weights_are_kept_and_exported(tmp_path, capsys):
    """Retraining keeps the weights of each candidate's best seed per budget (the others
    are deleted), and `export --retrained` writes those of its best retraining run."""
    from primer_search.retrain import best_retrained_weights, retrained_weights_folder

    path = tmp_path / "r.sqlite"
    _seeded_store(path).close()
    retrain(path, top=1, seeds=3, steps=4)
    folder = retrained_weights_folder(path)
    with Store(path, readonly=True) as store:
        runs = store.finished(kind="retrain")
    assert len(runs) == 3 and all(c.parent_id == 2 for c in runs)
    best = min(runs, key=lambda c: c.fitness)
    assert sorted(p.name for p in folder.iterdir()) == [f"{best.id}.msgpack"]
    assert best_retrained_weights(path, 2) == (best, folder / f"{best.id}.msgpack")
    assert best_retrained_weights(path, 1) is None

    retrain(path, top=1, seeds=2, steps=12)  # longer: its best seed is kept too
    with Store(path, readonly=True) as store:
        longer = [c for c in store.finished(kind="retrain") if c.result.steps == 12]
    best_long = min(longer, key=lambda c: c.fitness)
    assert best_long.fitness < best.fitness
    assert {p.name for p in folder.iterdir()} == {f"{best.id}.msgpack", f"{best_long.id}.msgpack"}

    out = tmp_path / "exported"
    assert main(["export", str(path), "2", "--retrained", "--out", str(out)]) == 0
    assert (out / "weights.msgpack").read_bytes() == \
        (folder / f"{best_long.id}.msgpack").read_bytes()
    assert "retrained for 12 steps" in capsys.readouterr().out
    assert main(["export", str(path), "1", "--retrained", "--out", str(tmp_path / "x")]) == 1
    assert "no retrained weights are kept for candidate #1" in capsys.readouterr().err
