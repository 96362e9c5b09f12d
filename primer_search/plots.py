"""Figures of a search, from its store: what ``primer-search plot`` and the notebooks show.

Each function takes the list of finished search candidates (``Store.finished()``, in the
order the population saw them) and a matplotlib ``Axes``; :func:`write_all` draws them
all into PNG files, and :func:`figures` is the table of them by name
(``Results.plot`` draws one). matplotlib runs headless (Agg).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from primer_search.fitness.results import Status  # noqa: E402
from primer_search.search.store import Candidate, Store  # noqa: E402

__all__ = ["figures", "fitness_over_time", "lineage", "outcomes", "pareto",
           "population_over_time", "tasks", "write_all"]


def _finite(c: Candidate) -> bool:
    return c.fitness is not None and math.isfinite(c.fitness)


def fitness_over_time(cands: list[Candidate], ax) -> None:
    """Each candidate's fitness in finishing order, with the running best."""
    xs = [i for i, c in enumerate(cands) if _finite(c)]
    ys = [cands[i].fitness for i in xs]
    colours = ["tab:gray" if cands[i].status == Status.DUPLICATE else
               "tab:orange" if cands[i].status == Status.HURDLE else "tab:blue" for i in xs]
    ax.scatter(xs, ys, s=12, c=colours, alpha=0.7)
    best, run = math.inf, []
    for c in cands:
        best = min(best, c.fitness) if _finite(c) else best
        run.append(best)
    ax.step(range(len(cands)), run, where="post", color="tab:red", label="running best")
    ax.set(xlabel="candidate (finishing order)", ylabel="fitness",
           title="Fitness (blue trained, orange hurdle-stopped, gray duplicate)")
    ax.set_yscale("log")
    ax.legend()


def population_over_time(cands: list[Candidate], ax, population: int) -> None:
    """Fitness distribution of the population (the last P finished) at regular points."""
    points = list(range(population, len(cands) + 1, max(1, population // 2))) or [len(cands)]
    data = [[c.fitness for c in cands[max(0, p - population):p] if _finite(c)] or [math.nan]
            for p in points]
    ax.boxplot(data, positions=points, widths=max(1, population // 3), manage_ticks=False)
    ax.set(xlabel="candidates finished", ylabel="fitness",
           title=f"Population fitness over time (last {population} finished)")
    ax.set_yscale("log")


def outcomes(cands: list[Candidate], ax) -> None:
    """How candidates ended, with the commonest failure reasons in the labels."""
    counts = collections.Counter(c.status for c in cands)
    reasons = collections.Counter(c.result.reason.split(":")[0][:40] for c in cands
                                  if c.result is not None and c.status not in (Status.OK, Status.DUPLICATE)
                                  and c.result.reason)
    names = sorted(counts, key=counts.get, reverse=True)
    ax.barh(names, [counts[n] / len(cands) for n in names])
    ax.set(xlabel="share of candidates", title="Outcomes")
    if reasons:
        text = "\n".join(f"{n}x {r}" for r, n in reasons.most_common(4))
        ax.text(0.98, 0.02, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=7)


def pareto(cands: list[Candidate], ax, cost: str) -> None:
    """Perplexity against a cost (``"step_time_s"`` or ``"num_params"``), front in red."""
    pts = sorted((getattr(c.result, cost), c.fitness, c.id) for c in cands
                 if _finite(c) and c.status != Status.DUPLICATE and c.result is not None)
    if not pts:
        return
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, alpha=0.6)
    front, best = [], math.inf
    for x, y, cid in pts:
        if y < best:
            front.append((x, y, cid))
            best = y
    ax.plot([p[0] for p in front], [p[1] for p in front], "r.-", label="Pareto front")
    for x, y, cid in front:
        ax.annotate(f"#{cid}", (x, y), fontsize=7)
    label = "step time (s)" if cost == "step_time_s" else "parameters"
    ax.set(xlabel=label, ylabel="fitness", title=f"Fitness vs {label}")
    ax.set_yscale("log")
    ax.legend()


def lineage(chain: list[Candidate], ax) -> None:
    """The best candidate's ancestry as a chain: fitness per generation, mutations noted."""
    chain = list(reversed(chain))  # root first
    ys = [c.fitness if _finite(c) else math.nan for c in chain]
    ax.plot(range(len(chain)), ys, "o-")
    ax.set_xticks(range(len(chain)))
    for i, c in enumerate(chain):
        ax.annotate(f"#{c.id} {c.mutation[:28]}", (i, ys[i]), fontsize=6, rotation=20)
    ax.set(xlabel="generation (0 = seed)", ylabel="fitness",
           title=f"Lineage of the best, #{chain[-1].id}")


def _has_recall(c: Candidate) -> bool:
    return (c.result is not None and c.status != Status.DUPLICATE
            and math.isfinite(c.result.recall_accuracy) and math.isfinite(c.result.perplexity))


def tasks(cands: list[Candidate], ax) -> None:
    """Each trained candidate's recall accuracy against its language-model perplexity,
    coloured by its context-use score; the ten best by fitness are labelled."""
    pts = [c for c in cands if _has_recall(c)]
    if not pts:
        return
    context = [c.result.context_use if math.isfinite(c.result.context_use) else 0.0 for c in pts]
    dots = ax.scatter([c.result.perplexity for c in pts], [c.result.recall_accuracy for c in pts],
                      c=context, cmap="viridis", s=14, alpha=0.8)
    ax.figure.colorbar(dots, ax=ax, label="context use (nats)")
    for c in sorted((c for c in pts if _finite(c)), key=lambda c: c.fitness)[:10]:
        ax.annotate(f"#{c.id}", (c.result.perplexity, c.result.recall_accuracy), fontsize=7)
    ax.set(xlabel="language-model perplexity", ylabel="recall accuracy",
           title="Tasks: recall against perplexity (top 10 by fitness labelled)")
    ax.set_xscale("log")


def figures(store_path, lineage_of: int | None = None) -> dict[str, Callable]:
    """The figures of the store at ``store_path``, by name, each a function that draws
    into a matplotlib ``Axes``: fitness, population (the config's own population size),
    outcomes, pareto_step_time, pareto_params, lineage (of candidate ``lineage_of``, else
    of the best) and tasks (when the search scored recall). Read once, drawn on demand."""
    from primer_search.search.evolution import EvolutionConfig

    with Store(store_path, readonly=True) as store:
        cands = store.finished()
        population = store.config.get("evolution", {}).get(
            "population_size", EvolutionConfig().population_size)
        if lineage_of is None:
            top = store.top(1)
            lineage_of = top[0].id if top else None
        chain = store.lineage(lineage_of) if lineage_of is not None else []
    if not cands:
        raise ValueError(f"store {store_path} has no finished candidates to plot")
    drawn = {
        "fitness": lambda ax: fitness_over_time(cands, ax),
        "population": lambda ax: population_over_time(cands, ax, population),
        "outcomes": lambda ax: outcomes(cands, ax),
        "pareto_step_time": lambda ax: pareto(cands, ax, "step_time_s"),
        "pareto_params": lambda ax: pareto(cands, ax, "num_params"),
    }
    if chain:
        drawn["lineage"] = lambda ax: lineage(chain, ax)
    if any(_has_recall(c) for c in cands):
        drawn["tasks"] = lambda ax: tasks(cands, ax)
    return drawn


def write_all(store_path, out_dir) -> list[Path]:
    """Draw every figure of the store at ``store_path`` into ``out_dir`` (NAME.png);
    return the files."""
    drawn = figures(store_path)
    out = Path(out_dir)  # created only for a store there is something to draw of
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in drawn.items():
        fig, ax = plt.subplots(figsize=(8, 5))
        draw(ax)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)
        written.append(out / f"{name}.png")
    return written
