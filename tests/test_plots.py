"""`primer-search plot` draws real data from a store."""

import math

import matplotlib.pyplot as plt
import numpy as np

from primer_search.cli import main
from primer_search.fitness.results import EvalResult
from primer_search.plots import fitness_over_time, pareto, tasks
from primer_search.program import seeds
from primer_search.program.validate import dna_hash
from primer_search.search.store import Store

FITNESS = [500.0, 450.0, math.inf, 470.0, 420.0, 430.0]


def make_store(path):
    dna = seeds.get("primer_ez")
    with Store(path, {"evolution": {"population_size": 4}}) as store:
        parent = None
        for i, f in enumerate(FITNESS):
            cid = store.add(dna=dna, parent_id=parent, mutation=f"m{i}", dna_hash=dna_hash(dna))
            status = "nan" if math.isinf(f) else "ok"
            store.finish(cid, EvalResult(fitness=f, status=status, reason="loss is nan" * (status == "nan"),
                                         step_time_s=0.1 * (i + 1), num_params=1000 * (6 - i)))
            parent = cid if status == "ok" else parent
    return path


def test_plot_command_writes_every_figure(tmp_path, capsys):
    store = make_store(tmp_path / "s.sqlite")
    assert main(["plot", str(store), "--out", str(tmp_path / "figs")]) == 0
    names = {p.name for p in (tmp_path / "figs").glob("*.png")}
    assert names == {"fitness.png", "population.png", "outcomes.png", "pareto_step_time.png",
                     "pareto_params.png", "lineage.png"}
    assert all((tmp_path / "figs" / n).stat().st_size > 5000 for n in names)


def test_running_best_and_pareto_front_follow_the_data(tmp_path):
    with Store(make_store(tmp_path / "s.sqlite"), readonly=True) as store:
        cands = store.finished()
    fig, ax = plt.subplots()
    fitness_over_time(cands, ax)
    running = ax.lines[0].get_ydata()
    np.testing.assert_array_equal(running, [500, 450, 450, 450, 420, 420])
    ax.clear()
    pareto(cands, ax, "step_time_s")
    front = ax.lines[0]
    # Faster is better on x, lower on y: 500 @0.1, 450 @0.2, 420 @0.5 form the front.
    np.testing.assert_allclose(front.get_xdata(), [0.1, 0.2, 0.5])
    np.testing.assert_array_equal(front.get_ydata(), [500, 450, 420])
    plt.close(fig)


def test_plot_refuses_an_empty_store(tmp_path, capsys):
    Store(tmp_path / "e.sqlite", {}).close()
    assert main(["plot", str(tmp_path / "e.sqlite"), "--out", str(tmp_path / "f")]) == 1
    assert "no finished candidates" in capsys.readouterr().err


def test_a_store_with_recall_results_gets_the_tasks_figure(tmp_path):
    dna = seeds.get("primer_ez")
    path = tmp_path / "r.sqlite"
    points = [(8.0, 0.25, 0.01), (7.0, 0.99, 0.03), (6.5, 0.02, -0.01)]
    with Store(path, {}) as store:
        for ppl, acc, ctx in points:
            cid = store.add(dna=dna, parent_id=None, mutation="seed", dna_hash=dna_hash(dna))
            store.finish(cid, EvalResult(fitness=ppl * math.exp(-math.log(acc)), status="ok",
                                         perplexity=ppl, recall_accuracy=acc, context_use=ctx,
                                         recall_loss=-math.log(acc)))
    assert main(["plot", str(path), "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "tasks.png").stat().st_size > 5000
    with Store(path, readonly=True) as store:
        cands = store.finished()
    fig, ax = plt.subplots()
    tasks(cands, ax)
    xy = ax.collections[0].get_offsets()
    np.testing.assert_allclose(xy, [(p, a) for p, a, _ in points])
    plt.close(fig)
