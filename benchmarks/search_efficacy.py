"""Search efficacy: does regularized evolution find blocks that train better than its seed?

The Primer paper's claim (So et al. 2021, Sec. 3-4): evolution started from a plain
Transformer finds blocks that reach its quality with several times less compute, and
does clearly better than the same mutations without selection. This benchmark measures
both for this engine, through the real controller (Ray workers, the SQLite store):

1. **Searches.** Each arm runs ``--search-seeds`` searches of the same number of
   candidates under the same fitness budget (the profile's search config):
   ``evolution`` (regularized evolution from the Transformer seed alone),
   ``no_selection`` (the same mutations, tournament size 1: every parent drawn uniformly
   from the population, the paper's random-search control) and optionally ``random``
   (random programs, no mutation). Search seed ``s`` sets both the proposal stream and
   the training seed, the same ``s`` in every arm (paired).
2. **Final selection, as the paper did.** The top ``--top`` of each search are retrained
   with ``--retrain-seeds`` training seeds at ``--factor`` times the search budget; the
   Transformer and Primer-EZ seeds are retrained the same way. A search's winner is its
   best top candidate by mean retrained perplexity; an arm's winner is the best of its
   searches' winners. Each retrain records validation perplexity at ``--curve-points``
   equally spaced steps, which gives the compute ratio: how many fewer steps the winner
   needs to reach the Transformer's final perplexity.
3. **The proxy's fidelity.** The top ``--fidelity-top`` and a random sample of
   ``--fidelity-sample`` finished candidates of each search are also retrained (one seed)
   and the Spearman rank correlation between search fitness and retrained fitness is
   reported over each set. The retrain curves also say how faithful a shorter or
   longer proxy would have been: the correlation of the perplexity after k steps with
   the final one, over every retrained program.
4. **What was found.** Each arm's winner and the evolution arm's top programs are named
   by the known modifications they carry (:mod:`primer_search.program.describe`) and the
   winners' diffs to the Transformer seed are printed.
5. **Recall.** With the recall task in the fitness (``fitness.recall``), a retrain runs
   it too (as long as in the search: the evaluator keeps the recall steps of the config's
   own budget whatever budget a call names) and its
   fitness combines the two tasks as the search's did: a search's winner is its best top
   candidate by that retrained fitness, while "beats the Transformer" and the compute
   ratio compare language-model perplexity alone. The report gives every reference's and
   winner's recall accuracy and context-use score, and per arm how many of the searches'
   top 10 still take query-key products (keep attention).

Everything lands in ``--out DIR`` and a rerun with the same DIR resumes: ``stores/`` (one
store per search, resumable with ``primer-search search --resume``), ``retrains.jsonl``
(one line per finished retrain), ``winners/ARM.dna`` (retrain one on other text with
``primer-search train --dna FILE``), ``best_so_far.png``, ``retrain_curves.png`` and
``report.json``. The table goes to standard output (``--json``: the report instead).

    python benchmarks/search_efficacy.py --profile cpu --out efficacy-cpu   # ~60-90 min
    python benchmarks/search_efficacy.py --profile gpu --out efficacy-gpu   # one GPU

**Up a ladder** (``--ladder``, the ``cpu-ladder`` profile): phase 2 is final selection
up the search config's transfer ladder (``[[ladder.rungs]]``) instead of a longer
retrain at the same setting: each search's best climb the rungs by successive halving
(:func:`primer_search.retrain.climb_ladder`, every run a row of the search's store), and
the references climb every rung in a store of their own (``stores/references.sqlite``).
Searches run with ``reproducible_lag`` so that an arm's result depends on its seed and
not on timing, with 5 search seeds per arm. The report gives, per rung, each reference's
and each search winner's language-model perplexity; per arm the median and spread over
search seeds at the top rung; a paired Wilcoxon test between arms (same search seeds)
with its p-value; the compute ratio of the evolution arm's best winner against the
Transformer at the top rung with a bootstrap interval over training seeds, where the
best is the lowest top-rung perplexity among the winners that recall there at least as
well as the Transformer (perplexity at these budgets cannot see recall); the same ratio
for Primer-EZ and for its ablations (``ablations``: MDHA alone, squared ReLU alone),
which climb beside the references; and the
fidelity to the top rung (Spearman) of the search fitness and of each lower rung, over
the candidates that trained at both. ``--fidelity-searches N`` (0 in ``cpu-ladder``, a
command of its own after the climb) also trains the top ``fidelity_top`` and a random
``fidelity_sample`` of the first N searches of each arm at every rung and under each of
the profile's other proxies (``fidelity_proxies``: the search's own setting, retrained
so that its seconds are measured like the others'; the first recall rule; language
modelling alone; half the steps), for each proxy's Spearman correlation with the top
rung and its seconds per candidate: the table that chooses a profile's proxy, the one
with the most fidelity per second (``choose_proxy``).

``--searches-only`` runs phase 1 alone and reports each search (candidates, best search
fitness, trained per hour; also ``searches.json``), with no retraining and no figures:
``--arms evolution --search-seeds 1 --searches-only --set limits.max_hours=0.05`` is a profile's
first search cut to three minutes (no new candidate after them; running ones finish).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import statistics
import sys
from pathlib import Path

from primer_search.fitness.config import BudgetConfig
from primer_search.fitness.results import EvalResult, Status
from primer_search.program import seeds as seed_library
from primer_search.program.describe import diff, keeps_attention, modifications
from primer_search.program.dna import save_dna
from primer_search.program.validate import dna_hash
from primer_search.search.config import load_config, rung_fitness
from primer_search.stats import compute_ratio as bootstrap_ratio
from primer_search.stats import correlation_p, paired_test, spread, steps_to_reach

ARMS = ("evolution", "no_selection", "random")
# Each arm's overrides of the profile's search config.
ARM_OVERRIDES = {
    "evolution": lambda cfg: [],
    "no_selection": lambda cfg: ["evolution.tournament_size=1"],
    "random": lambda cfg: ["evolution.random_initial_fraction=1.0",
                           f"evolution.population_size={cfg.limits.max_candidates}"],
}
REFERENCES = ("transformer", "primer_ez")
# Primer-EZ with one of its two changes, for which of them carries its compute ratio.
ABLATIONS = {"primer_ez: MDHA only": lambda: seed_library.primer_ez(squared_relu=False),
             "primer_ez: squared ReLU only": lambda: seed_library.primer_ez(mdha=False)}


@dataclasses.dataclass(frozen=True)
class Profile:
    config: str
    arms: tuple[str, ...] = ("evolution", "no_selection")
    search_seeds: int = 3
    top: int = 5
    retrain_seeds: int = 3
    factor: int = 3
    curve_points: int = 12
    fidelity_top: int = 10
    fidelity_sample: int = 5
    overrides: tuple[str, ...] = ()
    # Final selection up the config's [[ladder.rungs]] instead of --factor x the budget.
    ladder: bool = False
    # Up a ladder: how many search seeds per arm also train their top `fidelity_top` and a
    # random `fidelity_sample` of their other candidates at every rung (one seed), for
    # the fidelity of each proxy to the top rung. Costly at the top rung: 0 skips it.
    fidelity_searches: int = 0
    # Other search fitnesses to weigh against the one the searches ran with, each trained
    # on the same candidates for its fidelity to the top rung: (name, overrides of the
    # search config; none: the search's own setting, retrained to time it like the
    # others). Cheap: each costs one search-budget run per candidate.
    fidelity_proxies: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Blocks of the zoo (seed names, or recall_calibration's attention-free blocks) that
    # also train at every rung and under every proxy, so that each proxy is weighed on
    # the families it would let into a search, not only on those this search let in.
    fidelity_blocks: tuple[str, ...] = ()
    # Up a ladder: blocks of ABLATIONS that climb beside the references, each with its
    # compute ratio against the Transformer at the top rung.
    ablations: tuple[str, ...] = ()


# The fidelity table's key for the zoo's blocks, and the row of the search's own setting
# retrained (the proxy named "the search's own setting", with no overrides).
ZOO_BLOCKS = "zoo blocks"
OWN_SETTING = "proxy: the search's own setting"
# A proxy is chosen only if it ranks the zoo's blocks as the top rung does beyond chance:
# its correlation's one-sided p-value under this (over 9 blocks, about 0.58 or more).
ZOO_LEVEL = 0.05

PROFILES = {
    # 2-core development machine, within 90 minutes.
    "cpu": Profile("efficacy_cpu"),
    # One lent H100-class GPU, within 30 minutes (four workers share it).
    "gpu": Profile("efficacy_gpu", fidelity_top=20, fidelity_sample=10),
    # The CPU profile with final selection up its ladder: reproducible searches, 5 search
    # seeds per arm. The searches and the climb are separate commands (--searches-only,
    # then the same command without it), each meant to fit in 90 minutes.
    "cpu-ladder": Profile("efficacy_cpu", search_seeds=5, ladder=True,
                          overrides=("reproducible_lag=4",), fidelity_proxies=(
                              ("the search's own setting", ()),
                              ("the first recall rule: 4 pairs, hinge 0.9 x 2", (
                                  "fitness.recall.pairs=4", "fitness.recall.hinge_fraction=0.9",
                                  "fitness.recall.hinge_weight=2")),
                              ("language modelling alone", ("fitness.recall.enabled=false",)),
                              ("half the steps", ("fitness.budget.steps=50",)),
                              ("the first ladder runs' 200 steps", (
                                  "fitness.budget.steps=200", "fitness.recall.timing=first"))),
                          fidelity_blocks=("transformer", "primer_ez", "primer",
                                           "transformer_pp", "swiglu", "rwkv", "monarch_mixer",
                                           "dconv_for_attention", "local-mixing-51"),
                          ablations=tuple(ABLATIONS)),
    # Seconds, for the smoke test: a tiny model, a few candidates, one search per arm.
    "smoke": Profile("efficacy_cpu", search_seeds=1, top=2, retrain_seeds=2, factor=2,
                     curve_points=2, fidelity_top=3, fidelity_sample=2, overrides=(
                         "limits.max_candidates=5", "pool.workers=1", "hurdles.min_history=2",
                         "evolution.population_size=2", "evolution.tournament_size=2",
                         "fitness.model.d_model=16", "fitness.model.num_layers=1",
                         "fitness.recall.pairs=4", "fitness.data.seq_len=16", "fitness.data.batch_size=4",
                         "fitness.data.eval_tokens=64", "fitness.budget.steps=4")),
}
# The cpu-ladder profile as its first records ran it (benchmarks/records/
# efficacy-cpu-ladder-200-steps): 80 candidates a search of 200 steps each, the recall
# task trained before the language model, no op prior; its fidelity table chose the
# 100 steps that efficacy_cpu trains now.
PROFILES["cpu-ladder-200-steps"] = dataclasses.replace(
    PROFILES["cpu-ladder"], overrides=(
        "reproducible_lag=4", "limits.max_candidates=80", "fitness.budget.steps=200",
        "fitness.recall.timing=first", "evolution.mutation.spec.op_weights=[]"),
    fidelity_proxies=PROFILES["cpu-ladder"].fidelity_proxies[:3] + (
        ("half the steps", ("fitness.budget.steps=100", "fitness.recall.timing=first")),))
# The smoke profile up a two-rung ladder of its own tiny settings, two search seeds.
PROFILES["smoke-ladder"] = dataclasses.replace(
    PROFILES["smoke"], search_seeds=2, ladder=True, overrides=PROFILES["smoke"].overrides + (
        "reproducible_lag=2",
        'ladder.rungs=[{name="2x steps", candidates=2, seeds=2, fitness={budget={steps=8, '
        'stages=2, pass_rate=1.0}}}, {name="2x width", candidates=1, seeds=2, fitness={'
        'model={d_model=32}, data={seq_len=32}, budget={steps=12, stages=3, '
        'pass_rate=1.0}, recall={pairs=2}}}]'), fidelity_searches=1,
    fidelity_proxies=(("language modelling alone", ("fitness.recall.enabled=false",)),))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Statistics


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None under 3 pairs or when
    either side is constant."""
    if len(xs) < 3:
        return None

    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def best_so_far(fitness: list[float]) -> list[float]:
    out, best = [], math.inf
    for f in fitness:
        best = min(best, f)
        out.append(best)
    return out


# ---------------------------------------------------------------------------------------
# Phase 1: searches


def search_config(profile: Profile, arm: str, seed: int, extra: list[str]):
    base = load_config(profile.config, list(profile.overrides) + extra)
    return load_config(profile.config, list(profile.overrides) + extra + ARM_OVERRIDES[arm](base)
                       + [f"seed={seed}", f"fitness.seed={seed}"])


def run_searches(profile: Profile, out: Path, extra: list[str],
                 summaries: dict | None = None) -> dict[tuple[str, int], Path]:
    """Run (or resume) every search of ``profile``; return their stores by (arm, seed).
    ``summaries``, if given, receives the :class:`SearchSummary` of each search run here."""
    from primer_search.search.controller import resume_search, run_search
    from primer_search.search.store import Store

    stores = {}
    (out / "stores").mkdir(parents=True, exist_ok=True)
    for seed in range(profile.search_seeds):
        for arm in profile.arms:
            path = out / "stores" / f"{arm}-seed{seed}.sqlite"
            stores[arm, seed] = path
            cfg = search_config(profile, arm, seed, extra)
            if path.exists():
                with Store(path) as store:
                    done = store.count() - store.count(Status.PENDING)
                if done >= (cfg.limits.max_candidates or 0):
                    log(f"search {arm} seed {seed}: done ({done} candidates)")
                    continue
                log(f"search {arm} seed {seed}: resuming at {done} candidates")
                summary = resume_search(path)
            else:
                log(f"search {arm} seed {seed}: {cfg.limits.max_candidates} candidates")
                summary = run_search(cfg, path)
            if summaries is not None:
                summaries[arm, seed] = summary
    return stores


def search_report(stores: dict, summaries: dict) -> dict:
    """What ``--searches-only`` reports: one row per search, from its store and (if it
    ran here) its summary, and per arm the median best and the top 10 keeping attention,
    with evolution against each other arm paired by search seed (the same proposal
    stream start and training seed)."""
    rows = []
    for (arm, seed), path in stores.items():
        cands, stages = search_rows(path)
        ranked = ranked_programs(cands, stages)
        best = ranked[0] if ranked else None
        seed_row = next((c for c in cands if c.mutation.startswith("seed:")
                         and math.isfinite(full_fitness(c, stages))), None)
        s = summaries.get((arm, seed))
        row = {"arm": arm, "seed": seed, "store": str(path), "finished": len(cands),
               "full_budget": sum(math.isfinite(full_fitness(c, stages)) for c in cands),
               "best_search_fitness": best.result.fitness if best else None,
               "best": _program_row(best), "seed_program": _program_row(seed_row),
               "top10_keep_attention": sum(keeps_attention(c.dna) for c in ranked[:10]),
               "top10": len(ranked[:10])}
        if s is not None:
            row.update(trained=s.trained, duplicates=s.duplicates, failed=s.failed,
                       seconds=round(s.seconds, 1), stopped_by=s.stopped_by,
                       trained_per_hour=round(3600 * s.trained / max(s.seconds, 1e-9), 1),
                       loop_share=round(s.loop_s / max(s.evaluation_s, 1e-9), 4))
        rows.append(row)
    arms = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        runs = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["seed"])
        bests = [r["best_search_fitness"] for r in runs if r["best_search_fitness"] is not None]
        arms[arm] = {"median_best_search_fitness": statistics.median(bests) if bests else None,
                     "top10_keep_attention": sum(r["top10_keep_attention"] for r in runs),
                     "top10": sum(r["top10"] for r in runs)}
    # A search with no full-budget candidate counts as infinite; paired_test drops it.
    best = {(r["arm"], r["seed"]): math.inf if r["best_search_fitness"] is None
            else r["best_search_fitness"] for r in rows}
    for arm in [a for a in arms if a != "evolution" and "evolution" in arms]:
        seeds = sorted(s for a, s in best if a == arm and ("evolution", s) in best)
        arms["evolution"][f"against {arm}"] = paired_test(
            [best["evolution", s] for s in seeds], [best[arm, s] for s in seeds])
    return {"searches": rows, "arms": arms}


def _program_row(cand) -> dict | None:
    """A finished search candidate's id, its tasks' metrics and whether it keeps
    attention."""
    if cand is None:
        return None
    r = cand.result
    return {"id": cand.id, "mutation": cand.mutation, "fitness": r.fitness,
            "perplexity": r.perplexity, "recall_accuracy": r.recall_accuracy,
            "recall_loss": r.recall_loss, "context_use": r.context_use,
            "keeps_attention": keeps_attention(cand.dna),
            "modifications": modifications(cand.dna, seed_library.get("transformer"))}


def print_search_report(report: dict) -> None:
    print("| search | trained (per hour) | seconds | best: fitness, LM ppl, recall, "
          "context use | the seed in it | top 10 keeping attention |")
    print("|---|---:|---:|---|---|---:|")

    def prog(p):
        if p is None:
            return "-"
        return (f"#{p['id']}: {_f(p['fitness'], '.4g')}, {_f(p['perplexity'], '.4g')}, "
                f"{_f(p['recall_accuracy'])}, {_f(p['context_use'], '+.3f')}")

    for r in report["searches"]:
        print(f"| {r['arm']} seed {r['seed']} | {r.get('trained', '-')} "
              f"({r.get('trained_per_hour', '-')}) | {r.get('seconds', '-')} | "
              f"{prog(r['best'])} | {prog(r['seed_program'])} | "
              f"{r['top10_keep_attention']} of {r['top10']} |")
    print()
    for arm, a in report["arms"].items():
        line = (f"{arm}: median best search fitness {_f(a['median_best_search_fitness'], '.4g')}, "
                f"top 10 keeping attention {a['top10_keep_attention']} of {a['top10']}")
        for k, t in a.items():
            if k.startswith("against "):
                line += (f"; {k}: better in {t['wins']} of {t['n']} seeds, "
                         f"one-sided Wilcoxon p = {_f(t['p_value'])}")
        print(line)
    for r in report["searches"]:
        if r["best"]:
            print(f"{r['arm']} seed {r['seed']} #{r['best']['id']}: "
                  f"{'; '.join(r['best']['modifications']) or 'same ops as the seed'}")


def search_rows(path: Path) -> tuple[list, int]:
    """(finished search candidates in id order, the number of budget stages)."""
    from primer_search.search.config import config_from_dict
    from primer_search.search.store import Store

    with Store(path) as store:
        cfg = config_from_dict(store.config)
        return [c for c in store.all() if c.kind == "search" and c.status.is_finished()], \
            cfg.fitness.budget.stages


def ranked_programs(cands: list, stages: int) -> list:
    """A search's candidates that trained the whole budget, best search fitness first, one
    per program (the first of several with the same DNA hash)."""
    ranked, seen = [], set()
    for c in sorted(cands, key=lambda c: (full_fitness(c, stages), c.id)):
        if math.isfinite(full_fitness(c, stages)) and c.dna_hash not in seen:
            seen.add(c.dna_hash)
            ranked.append(c)
    return ranked


def full_fitness(cand, stages: int) -> float:
    """A candidate's search fitness if it trained the whole budget, else infinity."""
    r = cand.result
    if r is None or r.status.is_failed() or len(r.stage_fitness) < stages:
        return math.inf
    return r.fitness


# ---------------------------------------------------------------------------------------
# Phase 2: retraining


@dataclasses.dataclass
class RetrainPlan:
    """Which programs to retrain with which seeds, and what each search contributes."""

    # DNA hash -> DNA, and -> how many training seeds it is retrained with.
    dnas: dict[str, object] = dataclasses.field(default_factory=dict)
    seeds: dict[str, int] = dataclasses.field(default_factory=dict)
    # (arm, search seed) -> [(DNA hash, search fitness)]: its top, and its random sample.
    top: dict[tuple[str, int], list] = dataclasses.field(default_factory=dict)
    sample: dict[tuple[str, int], list] = dataclasses.field(default_factory=dict)

    def want(self, h: str, dna, seeds: int) -> None:
        self.dnas[h] = dna
        self.seeds[h] = max(self.seeds.get(h, 0), seeds)


def plan_retrains(profile: Profile, stores: dict) -> RetrainPlan:
    plan = RetrainPlan()
    for name in REFERENCES:
        dna = seed_library.get(name)
        plan.want(dna_hash(dna), dna, profile.retrain_seeds)
    for (arm, seed), path in stores.items():
        cands, stages = search_rows(path)
        ranked = ranked_programs(cands, stages)
        top = ranked[:max(profile.top, profile.fidelity_top)]
        plan.top[arm, seed] = [(c.dna_hash, c.result.fitness) for c in top]
        for k, c in enumerate(top):
            plan.want(c.dna_hash, c.dna, profile.retrain_seeds if k < profile.top else 1)
        rest = ranked[len(top):]
        rng = random.Random(f"fidelity/{arm}/{seed}")
        sample = rng.sample(rest, min(profile.fidelity_sample, len(rest)))
        plan.sample[arm, seed] = [(c.dna_hash, c.result.fitness) for c in sample]
        for c in sample:
            plan.want(c.dna_hash, c.dna, 1)
    return plan


def load_retrains(path: Path) -> dict[tuple[str, int], dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["hash"], row["seed"]] = row
    return done


def run_retrains(profile: Profile, plan: RetrainPlan, out: Path, extra: list[str]) -> dict:
    """Retrain what ``plan`` asks on the profile's Ray workers; every finished run is
    appended to ``retrains.jsonl`` at once, and runs already there are skipped."""
    from primer_search.search.dispatch import run_jobs
    from primer_search.search.pool import Job
    from primer_search.search.ray_pool import RayPool, init_ray

    path = out / "retrains.jsonl"
    done = load_retrains(path)
    cfg = search_config(profile, "evolution", 0, extra)
    search_steps = cfg.fitness.budget.steps
    budget = BudgetConfig(steps=profile.factor * search_steps, stages=profile.curve_points,
                          pass_rate=1.0, timeout_s=cfg.fitness.budget.timeout_s)
    jobs, keys = [], {}
    # The references and top programs with all their seeds first, so that a run cut
    # short has the final selection; the one-seed fidelity runs after.
    order = sorted(plan.dnas, key=lambda h: -plan.seeds[h])
    for h in order:
        for seed in range(plan.seeds[h]):
            if (h, seed) not in done:
                keys[len(jobs)] = (h, seed)
                jobs.append(Job(len(jobs), plan.dnas[h], seed=seed, budget=budget))
    log(f"retraining: {len(jobs)} runs of {budget.steps} steps "
        f"({len(done)} already done)")
    if not jobs:
        return done
    init_ray(cfg)
    pool = RayPool(cfg)
    with path.open("a") as f:
        def save(job, result_done) -> None:
            h, seed = keys[job.cid]
            r = result_done.result
            row = {"hash": h, "seed": seed, "steps": budget.steps, "stages": budget.stages,
                   "result": r.to_dict()}
            done[h, seed] = row
            f.write(json.dumps(row) + "\n")
            f.flush()
            log(f"retrain {len(done)}: {h[:10]} seed {seed}: {r.status.value} "
                f"{r.fitness:.4g} ({r.train_s:.0f} s)")

        try:
            run_jobs(pool, jobs, on_done=save)
        finally:
            pool.close()
    return done


# ---------------------------------------------------------------------------------------
# Phase 3: analysis


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean (infinite if any value is) and sample standard deviation of the finite ones."""
    finite = [v for v in values if math.isfinite(v)]
    return (statistics.fmean(values) if len(finite) == len(values) else math.inf,
            statistics.stdev(finite) if len(finite) > 1 else 0.0)


def retrained(done: dict, h: str, seeds: int) -> dict | None:
    """A program's retrained fitness (``mean``, ``std``, ``runs``: what final selection
    ranks by), its language-model perplexity (``ppl_*``) with the mean perplexity curve,
    and its mean recall accuracy and context-use score; None unless all ``seeds`` runs
    are there. A failed run makes the means infinite."""
    rows = [done.get((h, s)) for s in range(seeds)]
    if any(r is None for r in rows):
        return None
    results = [EvalResult.from_dict(r["result"]) for r in rows]
    fits = [math.inf if r.failed else r.fitness for r in results]
    ppls = [math.inf if r.failed else r.perplexity for r in results]
    steps, stages = rows[0]["steps"], rows[0]["stages"]
    curve = []
    if all(not r.failed and len(r.stage_fitness) == stages for r in results):
        for k in range(stages):
            curve.append((round(steps * (k + 1) / stages), statistics.fmean(
                (r.stage_perplexity or r.stage_fitness)[k] for r in results)))
    mean, std = _mean_std(fits)
    ppl_mean, ppl_std = _mean_std(ppls)
    return {"mean": mean, "std": std, "runs": fits, "ppl_mean": ppl_mean, "ppl_std": ppl_std,
            "ppl_runs": ppls, "curve": curve, "steps": steps,
            "recall_accuracy": statistics.fmean(r.recall_accuracy for r in results),
            "context_use": statistics.fmean(r.context_use for r in results)}


def analyse(profile: Profile, stores: dict, plan: RetrainPlan, done: dict, out: Path) -> dict:
    transformer = seed_library.get("transformer")
    ref = {name: retrained(done, dna_hash(seed_library.get(name)), profile.retrain_seeds)
           for name in REFERENCES}
    report = {"profile": dataclasses.asdict(profile), "references": ref, "arms": {},
              "searches": []}
    curves: dict[str, list[list[float]]] = {}
    for (arm, seed), path in sorted(stores.items()):
        cands, stages = search_rows(path)
        fits = [full_fitness(c, stages) for c in cands]
        curve = best_so_far(fits)
        curves.setdefault(arm, []).append(curve)
        by_hash = {c.dna_hash: c for c in cands}
        tops = []
        for h, fit in plan.top[arm, seed][:profile.top]:
            r = retrained(done, h, profile.retrain_seeds)
            if r is not None:
                tops.append({"hash": h, "id": by_hash[h].id, "search_fitness": fit, **r,
                             "modifications": modifications(by_hash[h].dna, transformer)})
        winner = min(tops, key=lambda t: t["mean"]) if tops else None

        def fidelity(pairs):
            xs, ys = [], []
            for h, fit in pairs:
                row = done.get((h, 0))
                if row:
                    r = EvalResult.from_dict(row["result"])
                    xs.append(fit)
                    ys.append(math.inf if r.failed else r.fitness)
            ok = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
            return spearman([x for x, _ in ok], [y for _, y in ok]), len(ok)

        top10 = [by_hash[h] for h, _ in plan.top[arm, seed][:10]]
        report["searches"].append({
            "arm": arm, "seed": seed, "store": str(path), "candidates": len(cands),
            "top10_keep_attention": sum(keeps_attention(c.dna) for c in top10),
            "top10": len(top10),
            "best_search_fitness": curve[-1] if curve else math.inf,
            "best_so_far": curve, "top": tops, "winner": winner,
            "fidelity_top": fidelity(plan.top[arm, seed]),
            "fidelity_sample": fidelity(plan.sample[arm, seed])})
    for arm in profile.arms:
        runs = [s for s in report["searches"] if s["arm"] == arm]
        winners = [s["winner"] for s in runs if s["winner"]]
        win = min(winners, key=lambda w: w["mean"]) if winners else None
        if win is not None:
            dna = plan.dnas[win["hash"]]  # every retrained program's DNA is in the plan
            (out / "winners").mkdir(exist_ok=True)
            save_dna(dna, out / "winners" / f"{arm}.dna")
            win = {**win, "diff": diff(dna, transformer, "transformer", f"{arm} winner")}
        report["arms"][arm] = {
            "median_best_search_fitness": statistics.median(
                s["best_search_fitness"] for s in runs),
            "winner": win,
            "compute_ratio": compute_ratio(win, ref["transformer"]),
            "fidelity_top_mean": _mean([s["fidelity_top"][0] for s in runs]),
            "fidelity_sample_mean": _mean([s["fidelity_sample"][0] for s in runs]),
            "top10_keep_attention": sum(s["top10_keep_attention"] for s in runs),
            "top10": sum(s["top10"] for s in runs),
        }
    report["proxy_fidelity"] = proxy_fidelity(done, profile)
    report["verdict"] = verdict(report)
    plot(curves, report, out)
    return report


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def compute_ratio(win: dict | None, transformer: dict | None) -> dict | None:
    """Steps the Transformer trains divided by the steps the winner needs to reach its
    final perplexity (mean curves); None without both curves."""
    if not win or not transformer or not win["curve"] or not transformer["curve"]:
        return None
    target = transformer["curve"][-1][1]
    steps = steps_to_reach(win["curve"], target)
    total = transformer["curve"][-1][0]
    return {"target": target, "winner_steps": steps,
            "ratio": None if steps is None else total / steps,
            "resolution_steps": win["curve"][0][0]}


def proxy_fidelity(done: dict, profile: Profile) -> list[dict]:
    """Spearman between perplexity after k steps and the final one, over every program
    retrained with seed 0: how faithful a proxy of k steps would have been."""
    results = [EvalResult.from_dict(r["result"]) for (h, s), r in done.items() if s == 0]
    results = [r for r in results if not r.failed and len(r.stage_fitness) == profile.curve_points]
    if not results:
        return []
    steps = next(r["steps"] for r in done.values())
    final = [r.stage_fitness[-1] for r in results]
    return [{"steps": round(steps * (k + 1) / profile.curve_points),
             "spearman": spearman([r.stage_fitness[k] for r in results], final),
             "programs": len(results)} for k in range(profile.curve_points - 1)]


def verdict(report: dict) -> dict:
    """The issue's two must-shows and the stretch target, as booleans with their numbers."""
    ref_t = report["references"]["transformer"]
    evo = report["arms"].get("evolution", {})
    nos = report["arms"].get("no_selection", {})
    out = {}
    win = evo.get("winner")
    if win and ref_t:
        noise = max(ref_t["ppl_std"], win["ppl_std"])
        margin = ref_t["ppl_mean"] - win["ppl_mean"]
        out["winner_beats_transformer"] = {"margin": margin, "spread": noise,
                                           "pass": margin > 2 * noise}
        if math.isfinite(ref_t["recall_accuracy"]):
            ref_ez = report["references"].get("primer_ez") or {}
            out["winner_recalls_as_transformer"] = {
                "winner": win["recall_accuracy"], "transformer": ref_t["recall_accuracy"],
                "primer_ez": ref_ez.get("recall_accuracy"),
                "pass": win["recall_accuracy"] >= ref_t["recall_accuracy"]}
            out["winner_uses_context_as_transformer"] = {
                "winner": win["context_use"], "transformer": ref_t["context_use"],
                "pass": win["context_use"] >= ref_t["context_use"]}
    if evo and nos:
        out["evolution_beats_no_selection"] = {
            "evolution": evo["median_best_search_fitness"],
            "no_selection": nos["median_best_search_fitness"],
            "pass": evo["median_best_search_fitness"] < nos["median_best_search_fitness"]}
    ratio = (evo.get("compute_ratio") or {}).get("ratio")
    out["half_the_steps"] = {"ratio": ratio, "pass": ratio is not None and ratio >= 2.0}
    return out


def plot(curves: dict, report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, runs in curves.items():
        n = min(len(r) for r in runs)
        if n == 0:
            continue
        xs = range(1, n + 1)
        med = [statistics.median(r[i] for r in runs) for i in range(n)]
        lo = [min(r[i] for r in runs) for i in range(n)]
        hi = [max(r[i] for r in runs) for i in range(n)]
        line, = ax.plot(xs, med, label=f"{arm} (median of {len(runs)})")
        ax.fill_between(xs, lo, hi, alpha=0.2, color=line.get_color())
    ax.set_xlabel("candidates")
    ax.set_ylabel("best search fitness so far")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "best_so_far.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    named = [(name, r) for name, r in report["references"].items() if r]
    named += [(f"{arm} winner", a["winner"]) for arm, a in report["arms"].items() if a["winner"]]
    for name, r in named:
        if r["curve"]:
            ax.plot([s for s, _ in r["curve"]], [v for _, v in r["curve"]], marker="o",
                    markersize=3, label=f"{name}: {r['ppl_mean']:.3f} ± {r['ppl_std']:.3f}")
    ax.set_xlabel("training steps")
    ax.set_ylabel("validation perplexity (mean over seeds)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "retrain_curves.png", dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------
# Phase 2 and 3 up a ladder


def reference_store(profile: Profile, out: Path, extra: list[str]) -> Path:
    """``stores/references.sqlite``: the reference blocks as candidates, each evaluated
    once at the search budget (their search fitness), so that they climb the ladder in a
    store like any search's best."""
    return block_store(profile, out / "stores" / "references.sqlite", extra,
                       {**{name: seed_library.get(name) for name in REFERENCES},
                        **{name: ABLATIONS[name]() for name in profile.ablations}})


def block_store(profile: Profile, path: Path, extra: list[str], dnas: dict,
                pool_for=None) -> Path:
    """A store at ``path`` whose candidates are the blocks ``dnas`` (name: DNA, as
    mutation "seed:NAME"), each evaluated once at the search budget; blocks already in it
    are kept, so a rerun trains only what is missing. ``pool_for(config, timeout_s)``
    makes the pool (default: the search's Ray workers)."""
    from primer_search.search.config import config_to_dict
    from primer_search.search.dispatch import run_jobs
    from primer_search.search.pool import Job
    from primer_search.search.ray_pool import RayPool, init_ray
    from primer_search.search.store import Store

    cfg = search_config(profile, "evolution", 0, extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Store(path, config_to_dict(cfg) if not path.exists() else None) as store:
        have = {c.mutation for c in store.all()}
        jobs = []
        for name, dna in dnas.items():
            if f"seed:{name}" in have:
                continue
            cid = store.add(dna=dna, parent_id=None, mutation=f"seed:{name}",
                            dna_hash=dna_hash(dna))
            jobs.append(Job(cid, dna))
        for c in store.pending():
            if all(j.cid != c.id for j in jobs):
                jobs.append(Job(c.id, c.dna))
        if jobs:
            if pool_for is None:
                init_ray(cfg)
                pool = RayPool(cfg)
            else:
                pool = pool_for(cfg, cfg.limits.candidate_timeout_s)
            try:
                run_jobs(pool, jobs, on_done=lambda job, done: store.finish(
                    job.cid, done.result, worker=done.worker, node=done.node))
            finally:
                pool.close()
    return path


def climb(profile: Profile, stores: dict, out: Path, extra: list[str]) -> dict:
    """Every search's best up the ladder, and the references up every rung; returns the
    climbs by (arm, seed), with the references' under ("references", 0)."""
    from primer_search.retrain import climb_ladder
    from primer_search.search.ladder import LadderConfig

    cfg = search_config(profile, "evolution", 0, extra)
    if not cfg.ladder.rungs:
        raise SystemExit(f"--ladder: config {profile.config} has no [[ladder.rungs]]")
    workers = cfg.pool.workers

    def report(label, cid, seed, r):
        log(f"  {label}: #{cid} seed {seed}: {r.status.value} fitness {r.fitness:.4g} "
            f"ppl {r.perplexity:.4g} ({r.train_s:.0f} s)")

    climbs = {}
    refs = reference_store(profile, out, extra)
    # The references climb every rung: as many candidates as there are references.
    everyone = len(REFERENCES) + len(profile.ablations)
    ref_ladder = LadderConfig(rungs=tuple(dataclasses.replace(r, candidates=everyone)
                                          for r in cfg.ladder.rungs), include_seeds=False)
    log("ladder: references")
    climbs["references", 0] = climb_ladder(refs, ref_ladder, on_result=report, workers=workers)
    ladder = dataclasses.replace(cfg.ladder, include_seeds=False)
    for (arm, seed), path in sorted(stores.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        log(f"ladder: {arm} seed {seed}")
        climbs[arm, seed] = climb_ladder(path, ladder, on_result=report, workers=workers)
    return climbs


def _cost(result) -> float:
    """Seconds of worker time a result took: compile, both tasks' training, evaluation."""
    return result.compile_s + result.train_s + result.recall_s + result.eval_s


def _training_cost(result) -> float:
    """Seconds a result spent training both tasks and evaluating, without compiling."""
    return result.train_s + result.recall_s + result.eval_s


def ladder_fidelity(profile: Profile, stores: dict, extra: list[str],
                    pool_for=None, out: Path | None = None) -> dict:
    """For the first ``fidelity_searches`` search seeds of each arm: train the search's
    top ``fidelity_top`` and a random ``fidelity_sample`` of its other finished
    candidates at every rung with one seed (rows named "fidelity at rung K: NAME") and
    under each of the profile's ``fidelity_proxies`` (rows named "fidelity proxy:
    NAME"), then the Spearman correlation with the top rung's fitness of each proxy (the
    search fitness, the other proxies, each lower rung) over the top and over the sample,
    with each proxy's mean seconds per candidate. ``pool_for(config, timeout_s)`` makes
    each pool (default: the search's Ray workers).

    With ``fidelity_blocks`` and ``out`` (and ``fidelity_searches`` above 0: the zoo is
    part of that command), the same for those blocks of the zoo, in a store
    of their own (``out/stores/fidelity-blocks.sqlite``, under the key "zoo blocks"): a
    search's candidates are all of the family its proxy let through, so a proxy that
    would let another family in (language modelling alone: blocks without attention) is
    weighed on that family too.

    Seconds per candidate are comparable between the retrained rows only: they train
    one after another on the same workers, while in the search a worker compiled the
    next candidate as it trained one (so the search's own row is slower per step), and
    their programs come from the compilation cache that the search filled. So a
    retrained row's cost is its training and evaluation seconds plus the search's mean
    (cold) compile seconds over the same candidates, what a new program costs a search
    whatever its proxy; a proxy with no overrides (the search's own setting, retrained)
    gives the search's fitness a cost measured the same way."""
    result = {}
    for (arm, seed), path in sorted(stores.items()):
        if seed >= profile.fidelity_searches:
            continue
        cands, stages = search_rows(path)
        ranked = ranked_programs(cands, stages)
        top = ranked[:profile.fidelity_top]
        rest = ranked[len(top):]
        sample = random.Random(f"fidelity/{arm}/{seed}").sample(
            rest, min(profile.fidelity_sample, len(rest)))
        log(f"fidelity: {arm} seed {seed}: {len(top)} top and {len(sample)} sampled candidates")
        result[f"{arm} seed {seed}"] = _fidelity_rows(
            profile, path, arm, seed, extra, (("top", top), ("sample", sample)), pool_for)
    if profile.fidelity_searches > 0 and profile.fidelity_blocks and out is not None:
        from recall_calibration import blocks

        path = block_store(profile, out / "stores" / "fidelity-blocks.sqlite", extra,
                           blocks(list(profile.fidelity_blocks), []), pool_for)
        cands, stages = search_rows(path)
        log(f"fidelity: {len(cands)} blocks of the zoo")
        result[ZOO_BLOCKS] = _fidelity_rows(profile, path, "evolution", 0, extra,
                                            (("blocks", cands),), pool_for)
    return result


def _fidelity_rows(profile: Profile, path: Path, arm: str, seed: int, extra: list[str],
                   groups, pool_for) -> list[dict]:
    """Train the candidates of ``groups`` ((part name, candidates) pairs) of the store at
    ``path`` at every rung and under every proxy of ``profile`` (runs already there are
    found, not retrained); one row per proxy with its Spearman correlation with the top
    rung over each part and over all, and its seconds per candidate."""
    from primer_search.retrain import make_pool, rung_timeout, train_at_rung
    from primer_search.search.ladder import check_rung_settings
    from primer_search.search.store import Store

    cfg = search_config(profile, "evolution", 0, extra)
    cands, stages = search_rows(path)
    everyone = [c for _, group in groups for c in group]
    ids = [c.id for c in everyone]
    labels = [f"fidelity at rung {k + 1}: {r.name}" for k, r in enumerate(cfg.ladder.rungs)]
    proxy_labels = [f"fidelity proxy: {name}" for name, _ in profile.fidelity_proxies]
    settings = [rung_fitness(cfg, rung) for rung in cfg.ladder.rungs] + [
        search_config(profile, arm, seed, extra + list(overrides)).fitness
        for _, overrides in profile.fidelity_proxies]
    with Store(path) as store:
        for label, fitness in zip(labels + proxy_labels, settings):
            # Runs are found by label: refuse a label whose settings were edited.
            check_rung_settings(store, label, fitness)
            train_at_rung(store, dataclasses.replace(cfg, fitness=fitness), label, ids, 1,
                          rung_timeout(cfg.limits.candidate_timeout_s, cfg.fitness, fitness),
                          None, pool_for or (lambda c, t: make_pool(c, c.pool.workers,
                                                                    None, t)))
        at = {label: {r.parent_id: r.result for r in store.retrain_rows(label)
                      if r.result is not None} for label in labels + proxy_labels}
    target = {cid: (math.inf if r.failed else r.fitness) for cid, r in at[labels[-1]].items()}
    proxies = [("search fitness", {c.id: full_fitness(c, stages) for c in cands},
                [_cost(c.result) for c in everyone])]
    compile_s = statistics.fmean(c.result.compile_s for c in everyone)
    for label in proxy_labels + labels[:-1]:
        proxies.append((label.removeprefix("fidelity at ").removeprefix("fidelity "),
                        {cid: (math.inf if r.failed else r.fitness)
                         for cid, r in at[label].items()},
                        [_training_cost(r) + compile_s for r in at[label].values()]))
    rows = []
    for name, values, costs in proxies:
        # Each candidate's (proxy, top rung) pair where both are finite; kept in the row
        # for choose_proxy's bootstrap.
        paired = {str(c.id): [values[c.id], target[c.id]] for c in everyone
                  if c.id in values and c.id in target
                  and math.isfinite(values[c.id]) and math.isfinite(target[c.id])}
        row = {"proxy": name, "seconds_per_candidate": statistics.fmean(costs) if costs
               else None, "pairs": paired}
        for part, group in (*groups, ("all", everyone)):
            pairs = [paired[str(c.id)] for c in group if str(c.id) in paired]
            row[part] = spearman([x for x, _ in pairs], [y for _, y in pairs])
            row[f"{part}_n"] = len(pairs)
        rows.append(row)
    return rows


def _fidelity_gain_low(fidelity: dict, proxy: dict, base: dict, resamples: int = 1000,
                       level: float = 0.05) -> float | None:
    """The ``level`` quantile, over bootstrap resamples of each search's candidates, of
    ``proxy``'s fidelity per second minus ``base``'s; None without the candidates' pairs."""
    searches = []
    for rows in fidelity.values():
        a = next((r for r in rows if r["proxy"] == proxy["proxy"]), None)
        b = next((r for r in rows if r["proxy"] == base["proxy"]), None)
        if not (a and b and a.get("pairs") and b.get("pairs")):
            return None
        ids = sorted(set(a["pairs"]) & set(b["pairs"]))
        searches.append((a["pairs"], b["pairs"], ids))
    rng = random.Random("proxy choice")
    gains = []
    for _ in range(resamples):
        fa, fb = [], []
        for pa, pb, ids in searches:
            pick = [rng.choice(ids) for _ in ids]
            for pairs, acc in ((pa, fa), (pb, fb)):
                rho = spearman([pairs[i][0] for i in pick], [pairs[i][1] for i in pick])
                acc.append(rho if rho is not None else 0.0)
        gains.append(statistics.fmean(fa) / proxy["seconds_per_candidate"]
                     - statistics.fmean(fb) / base["seconds_per_candidate"])
    gains.sort()
    return gains[int(level * (len(gains) - 1))]


def choose_proxy(fidelity: dict, current: str | None = None) -> list[dict]:
    """Each proxy of the fidelity table over all its searches: the mean over searches of
    its Spearman correlation with the top rung (over each search's top, its random
    sample, and both), its mean seconds per candidate, and its fidelity per second
    (the mean correlation over both, divided by the seconds); with the zoo's blocks in
    the table (key "zoo blocks"), its correlation over them too. The chosen proxy has
    the most fidelity per second among those that rank the random sample the way the
    top rung does (a positive correlation), and the zoo's blocks too: a search spends
    its hours on the candidates it ranks, so a proxy half as faithful at a quarter of
    the cost ranks twice as many of them as well. Over the zoo, "the way the top rung
    does" means beyond chance (:func:`~primer_search.stats.correlation_p` under
    :data:`ZOO_LEVEL`): the zoo's blocks are the families a search could let in, and a
    proxy whose ranking of them is indistinguishable from none would let any family
    win, however well it ranks the one family a search's candidates share (they are all
    mutants of its seed). Where the rows carry each candidate's
    pair (as :func:`ladder_fidelity`'s do), that proxy replaces the search's own only if
    its gain in fidelity per second holds over bootstrap resamples of the candidates
    (the 5% quantile of the gain above 0; ``gain_low``), else the search's own stays
    chosen. ``current`` names the search's own proxy (default: its retrained row,
    :data:`OWN_SETTING`, when there is one, as its cost is measured like the others';
    else "search fitness"); each row says how it compares."""
    zoo = {r["proxy"]: r for r in fidelity.get(ZOO_BLOCKS, [])}
    fidelity = {k: v for k, v in fidelity.items() if k != ZOO_BLOCKS}
    names = []
    for rows in fidelity.values():
        names += [r["proxy"] for r in rows if r["proxy"] not in names]
    if current is None:
        current = OWN_SETTING if OWN_SETTING in names else "search fitness"

    def mean(rows, part):
        values = [r[part] for r in rows if r[part] is not None]
        return statistics.fmean(values) if values else None

    out = []
    for name in names:
        rows = [r for rs in fidelity.values() for r in rs if r["proxy"] == name]
        costs = [r["seconds_per_candidate"] for r in rows if r["seconds_per_candidate"]]
        row = {"proxy": name, "top": mean(rows, "top"), "sample": mean(rows, "sample"),
               "all": mean(rows, "all"),
               "n": sum(r["all_n"] for r in rows), "searches": len(rows),
               "seconds_per_candidate": statistics.fmean(costs) if costs else None}
        row["blocks"] = zoo.get(name, {}).get("all")
        row["blocks_n"] = zoo.get(name, {}).get("all_n", 0)
        row["blocks_p"] = correlation_p(row["blocks"], row["blocks_n"])
        row["fidelity_per_second"] = (row["all"] / row["seconds_per_candidate"]
                                      if row["all"] is not None and row["seconds_per_candidate"]
                                      else None)
        out.append(row)
    # With the search's own setting retrained, the search's row (its cost measured while
    # the next candidate compiled) is not weighed against the others.
    # A proxy that ranks the zoo's blocks against the top rung would let the wrong family
    # win a search, however well it ranks the family this search let in.
    eligible = [r for r in out if r["fidelity_per_second"] is not None
                and (r["proxy"] != "search fitness" or current == "search fitness")
                and r["all"] > 0 and (r["sample"] or 0) > 0
                and (not zoo or (r["blocks_p"] is not None and r["blocks_p"] < ZOO_LEVEL))]
    best = max(eligible, key=lambda r: r["fidelity_per_second"], default=None)
    base = next((r for r in out if r["proxy"] == current), None)
    # Another proxy replaces the search's own only when its gain in fidelity per second
    # holds over resamples of the candidates (its 5% quantile above 0).
    if best is not None and base is not None and best is not base:
        best["gain_low"] = _fidelity_gain_low(fidelity, best, base)
        if (best["gain_low"] is not None and best["gain_low"] <= 0
                and any(r is base for r in eligible)):
            best = base
    for r in out:
        r["chosen"] = r is best
        r["current"] = r["proxy"] == current
        r["per_second_vs_current"] = (
            r["fidelity_per_second"] / base["fidelity_per_second"]
            if base and base["fidelity_per_second"] and r["fidelity_per_second"] is not None
            else None)
    return out


def _curves(store_path: Path, label: str, cid: int) -> list[list[tuple[int, float]]]:
    """The per-seed language-model perplexity curves of candidate ``cid`` at a rung."""
    from primer_search.search.store import Store

    with Store(store_path, readonly=True) as store:
        rows = [r for r in store.retrain_rows(label) if r.parent_id == cid
                and r.result is not None and not r.result.failed]
    out = []
    for r in rows:
        values = r.result.stage_perplexity or r.result.stage_fitness
        n = len(values)
        out.append([(round(r.result.steps * (k + 1) / n), v) for k, v in enumerate(values)])
    return out


def analyse_ladder(profile: Profile, stores: dict, climbs: dict, out: Path,
                   extra: list[str] = ()) -> dict:
    transformer = seed_library.get("transformer")
    refs = climbs["references", 0]
    ref_path = out / "stores" / "references.sqlite"
    from primer_search.search.store import Store

    with Store(ref_path, readonly=True) as store:
        ref_ids = {c.mutation.removeprefix("seed:"): c.id for c in store.all()
                   if c.kind == "search"}
    labels = [r["label"] for r in refs]
    report = {"profile": dataclasses.asdict(profile), "rungs": labels, "references": {},
              "searches": [], "arms": {}}
    for name, cid in ref_ids.items():
        report["references"][name] = [rung["candidates"].get(cid) for rung in refs]
    # Each reference's compute ratio against the Transformer at the top rung (whose
    # curves the arms' ratios below use too).
    report["reference_ratios"] = {}
    t_curves = _curves(ref_path, labels[-1], ref_ids["transformer"]) \
        if "transformer" in ref_ids else []
    for name, cid in ref_ids.items():
        curves = _curves(ref_path, labels[-1], cid)
        if name != "transformer" and curves and t_curves:
            report["reference_ratios"][name] = bootstrap_ratio(curves, t_curves)
    for (arm, seed), path in sorted(stores.items()):
        cl = climbs[arm, seed]
        cands, stages = search_rows(path)
        by_id = {c.id: c for c in cands}
        winner = (cl[-1]["promoted"] or [None])[0]
        rungs = [{"label": r["label"], "entrants": r["entrants"],
                  "winner": r["candidates"].get(winner) if winner else None}
                 for r in cl]
        # Fidelity to the top rung: the search fitness, and each lower rung's fitness,
        # over the candidates that trained at both.
        top = cl[-1]["candidates"]
        fid = []
        xs = [(full_fitness(by_id[c], stages), top[c]["mean_fitness"]) for c in top
              if c in by_id]
        fid.append({"proxy": "search fitness", "spearman": spearman(
            [x for x, _ in xs], [y for _, y in xs]), "n": len(xs)})
        for r in cl[:-1]:
            pairs = [(r["candidates"][c]["mean_fitness"], top[c]["mean_fitness"])
                     for c in top if c in r["candidates"]]
            fid.append({"proxy": r["label"], "spearman": spearman(
                [x for x, _ in pairs], [y for _, y in pairs]), "n": len(pairs)})
        report["searches"].append({
            "arm": arm, "seed": seed, "store": str(path), "candidates": len(cands),
            "best_search_fitness": min((full_fitness(c, stages) for c in cands),
                                       default=math.inf),
            "winner": winner, "rungs": rungs, "fidelity": fid,
            "winner_keeps_attention": bool(winner and keeps_attention(by_id[winner].dna)),
            "modifications": modifications(by_id[winner].dna, transformer) if winner else []})
    top_t = report["references"].get("transformer", [None])[-1]
    t_recall = (top_t or {}).get("recall_accuracy", math.nan)
    # How many queries the top rung's recall task scores, for the noise of its accuracy.
    cfg = search_config(profile, "evolution", 0, list(extra))
    top_recall = rung_fitness(cfg, cfg.ladder.rungs[-1]).recall
    queries = top_recall.eval_sequences * top_recall.num_queries if top_recall.enabled else 0
    t_spread = recall_spread(top_t, queries)
    for arm in profile.arms:
        runs = sorted((s for s in report["searches"] if s["arm"] == arm),
                      key=lambda s: s["seed"])
        ppl = [(s["rungs"][-1]["winner"] or {}).get("perplexity", math.inf) for s in runs]
        recall = [(s["rungs"][-1]["winner"] or {}).get("recall_accuracy", math.nan)
                  for s in runs]
        keeps = [keeps_recall(r, t_recall, max(t_spread, recall_spread(
            s["rungs"][-1]["winner"], queries))) for r, s in zip(recall, runs)]
        best = best_that_recalls(ppl, keeps)
        entry = {"top_rung_perplexity": ppl, "top_rung_recall": recall,
                 "recalls_as_transformer": keeps, "transformer_recall": t_recall,
                 "transformer_recall_spread": t_spread, "spread": spread(ppl),
                 "best_seed": runs[best]["seed"] if best is not None else None}
        if best is not None and runs[best]["winner"] and top_t:
            s = runs[best]
            curves = _curves(Path(s["store"]), labels[-1], s["winner"])
            if curves and t_curves:
                entry["compute_ratio"] = bootstrap_ratio(curves, t_curves)
            win = s["rungs"][-1]["winner"]
            entry["beats_transformer"] = {
                "winner": win["perplexity"], "transformer": top_t["perplexity"],
                "margin": top_t["perplexity"] - win["perplexity"],
                "spread": max(_ppl_std(win), _ppl_std(top_t))}
            dna = by_dna(Path(s["store"]), s["winner"])
            (out / "winners").mkdir(exist_ok=True)
            save_dna(dna, out / "winners" / f"{arm}.dna")
        report["arms"][arm] = entry
    if "evolution" in report["arms"] and "no_selection" in report["arms"]:
        report["selection_test"] = paired_test(
            report["arms"]["evolution"]["top_rung_perplexity"],
            report["arms"]["no_selection"]["top_rung_perplexity"], alternative="less")
    report["verdict"] = ladder_verdict(report)
    return report


def keeps_recall(recall: float, transformer: float, spread: float = 0.0) -> bool:
    """Whether a top-rung recall accuracy is not below the Transformer's there by more
    than twice ``spread`` (the noise of either, :func:`recall_spread`: the same rule as
    "beats the Transformer", turned round); always, when the rung has no recall task
    (the Transformer's is NaN)."""
    if not math.isfinite(transformer):
        return True
    return math.isfinite(recall) and recall >= transformer - 2 * spread


def recall_spread(summary: dict | None, queries: int) -> float:
    """The noise of a rung summary's mean recall accuracy: its training seeds' standard
    deviation, or, where that is smaller (one seed, or seeds that agree by chance), the
    binomial standard deviation of one run's accuracy over its ``queries`` scored
    queries. 0 without a recall task."""
    values = [v for v in (summary or {}).get("recall_accuracies", []) if math.isfinite(v)]
    if not values or queries < 1:
        return 0.0
    p = statistics.fmean(values)
    seeds = statistics.stdev(values) if len(values) > 1 else 0.0
    return max(seeds, math.sqrt(p * (1 - p) / queries))


def best_that_recalls(perplexity: list[float], keeps: list[bool]) -> int | None:
    """An arm's best search, for "beats the Transformer" and the compute ratio: the index
    of the lowest top-rung perplexity among the winners that recall there at least as
    well as the Transformer (``keeps``); None if none does. Perplexity at these budgets
    cannot see recall, so a winner that dropped what attention does would otherwise
    pass on perplexity alone."""
    return min((i for i, ok in enumerate(keeps) if ok and math.isfinite(perplexity[i])),
               key=lambda i: perplexity[i], default=None)


def _ppl_std(summary: dict) -> float:
    values = [v for v in summary["perplexities"] if math.isfinite(v)]
    return statistics.stdev(values) if len(values) > 1 else 0.0


def by_dna(path: Path, cid: int):
    from primer_search.search.store import Store

    with Store(path, readonly=True) as store:
        return store.get(cid).dna


def ladder_verdict(report: dict) -> dict:
    out = {}
    evo = report["arms"].get("evolution", {})
    beat = evo.get("beats_transformer")
    if beat:
        out["winner_beats_transformer_at_top_rung"] = {
            **beat, "pass": beat["margin"] > 2 * beat["spread"]}
    ratio = (evo.get("compute_ratio") or {}).get("ratio")
    out["half_the_steps_at_top_rung"] = {
        "ratio": ratio, "low": (evo.get("compute_ratio") or {}).get("low"),
        "best_seed": evo.get("best_seed"), "pass": ratio is not None and ratio >= 2.0}
    if "recalls_as_transformer" in evo:
        out["a_winner_recalls_as_transformer_at_top_rung"] = {
            "seeds": [s for s, ok in zip(sorted(
                s["seed"] for s in report["searches"] if s["arm"] == "evolution"),
                evo["recalls_as_transformer"]) if ok],
            "pass": any(evo["recalls_as_transformer"])}
    ez, tr = report["references"].get("primer_ez"), report["references"].get("transformer")
    if ez and tr:
        ranks = [bool(a and b and a["perplexity"] < b["perplexity"]) for a, b in zip(ez, tr)]
        out["primer_ez_above_transformer_every_rung"] = {"rungs": ranks, "pass": all(ranks)}
    test = report.get("selection_test")
    if test:
        evo_med = report["arms"]["evolution"]["spread"]["median"]
        nos_med = report["arms"]["no_selection"]["spread"]["median"]
        out["selection_helps"] = {"evolution_median": evo_med, "no_selection_median": nos_med,
                                  "p_value": test["p_value"], "pass": evo_med < nos_med}
    return out


def print_ladder_table(report: dict) -> None:
    labels = report["rungs"]
    def cell(r):
        return (f"{_f(r and r['perplexity'])} ± {_f(r and _ppl_std(r))} "
                f"({_f(r and r.get('recall_accuracy'), '.3f')})")

    print("| program: perplexity ± spread over seeds (recall) | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    for name, rungs in report["references"].items():
        print(f"| {name} | " + " | ".join(cell(r) for r in rungs) + " |")
    for s in report["searches"]:
        cells = [cell(r["winner"]) for r in s["rungs"]]
        print(f"| {s['arm']} seed {s['seed']} winner (#{s['winner']}) | " + " | ".join(cells)
              + " |")
    print()
    for name, cr in report.get("reference_ratios", {}).items():
        print(f"{name}: compute ratio against the Transformer at the top rung "
              f"{_f(cr.get('ratio'), '.2f')}x ({_f(cr.get('low'), '.2f')}-"
              f"{_f(cr.get('high'), '.2f')})")
    print()
    print("| arm | top-rung perplexity per search seed (recall; * not below the "
          "Transformer's by more than twice the noise) | median | q1-q3 | "
          "best seed that recalls | compute ratio (90% interval) |")
    print("|---|---|---:|---:|---:|---:|")
    for arm, a in report["arms"].items():
        sp = a["spread"]
        cr = a.get("compute_ratio") or {}
        interval = f"({_f(cr.get('low'), '.2f')}-{_f(cr.get('high'), '.2f')})"
        if not cr:
            ratio = "-"
        elif cr.get("ratio") is None:
            ratio = f"never reaches the Transformer's final perplexity {interval}"
        else:
            ratio = f"{_f(cr['ratio'], '.2f')}x {interval}"
        recall = a.get("top_rung_recall") or [math.nan] * len(a["top_rung_perplexity"])
        keeps = a.get("recalls_as_transformer") or [True] * len(recall)
        seeds = ", ".join(f"{_f(p)} ({_f(r, '.2f')}{'*' if k else ''})" for p, r, k in zip(
            a["top_rung_perplexity"], recall, keeps))
        print(f"| {arm} | {seeds} | {_f(sp['median'])} | {_f(sp['q1'])}-{_f(sp['q3'])} | "
              f"{a['best_seed'] if a['best_seed'] is not None else '-'} | {ratio} |")
    test = report.get("selection_test")
    if test:
        print(f"\nevolution vs no_selection, paired by search seed (Wilcoxon, one-sided): "
              f"{test['wins']} of {test['n']} seeds better, median difference "
              f"{_f(test['median_difference'])}, p = {_f(test['p_value'], '.3f')}")
    print()
    print("| search | proxy | Spearman with the top rung: its top / a random sample / both "
          "| seconds per candidate |")
    print("|---|---|---:|---:|")
    for search, rows in report.get("fidelity_to_top_rung", {}).items():
        for f in rows:
            parts = " / ".join(f"{_f(f.get(p), '.2f')} (n={f.get(p + '_n', 0)})"
                               for p in ("top", "sample", "all")) if "top" in f else \
                f"- / - / {_f(f['all'], '.2f')} (n={f['all_n']})"
            print(f"| {search} | {f['proxy']} | {parts} | "
                  f"{_f(f['seconds_per_candidate'], '.1f')} |")
    if report.get("proxy_choice"):
        print("\n| proxy (mean over searches) | Spearman: top / sample / both | over the zoo's "
              "blocks (one-sided p) | seconds per candidate | fidelity per second | "
              "x the search's own |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in report["proxy_choice"]:
            mark = " (chosen)" if r["chosen"] else " (the search's own)" if r["current"] else ""
            print(f"| {r['proxy']}{mark} | {_f(r['top'], '.2f')} / {_f(r['sample'], '.2f')} / "
                  f"{_f(r['all'], '.2f')} (n={r['n']}) | {_f(r['blocks'], '.2f')} "
                  f"(n={r['blocks_n']}, p={_f(r.get('blocks_p'), '.3f')}) | "
                  f"{_f(r['seconds_per_candidate'], '.1f')} | "
                  f"{_f(r['fidelity_per_second'], '.4f')} | "
                  f"{_f(r['per_second_vs_current'], '.2f')} |")
        best = next((r for r in report["proxy_choice"] if "gain_low" in r), None)
        if best is not None:
            print(f"\nmost fidelity per second: {best['proxy']}; its gain over the search's "
                  f"own, 5% bootstrap quantile: {_f(best['gain_low'], '.4f')} per second "
                  f"({'chosen' if best['chosen'] else 'within the noise: the search keeps its own'})")
    print()
    for name, v in report["verdict"].items():
        numbers = ", ".join(f"{k}={x if isinstance(x, list) else _f(x)}"
                            for k, x in v.items() if k != "pass")
        print(f"{name}: {'PASS' if v['pass'] else 'MISS'} ({numbers})")
    for s in report["searches"]:
        print(f"{s['arm']} seed {s['seed']} winner #{s['winner']}: keeps attention "
              f"{s['winner_keeps_attention']}; {'; '.join(s['modifications']) or 'same ops'}")


# ---------------------------------------------------------------------------------------
# Output


def _f(x, fmt=".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def print_table(report: dict) -> None:
    ref = report["references"]
    print("| search | candidates | best search fitness | winner retrained (mean ± std) "
          "| top-k Spearman | sample Spearman |")
    print("|---|---:|---:|---:|---:|---:|")
    for s in report["searches"]:
        w = s["winner"]
        print(f"| {s['arm']} seed {s['seed']} | {s['candidates']} | "
              f"{_f(s['best_search_fitness'])} | "
              f"{_f(w and w['mean'])} ± {_f(w and w['std'])} | "
              f"{_f(s['fidelity_top'][0], '.2f')} (n={s['fidelity_top'][1]}) | "
              f"{_f(s['fidelity_sample'][0], '.2f')} (n={s['fidelity_sample'][1]}) |")
    print()
    print("| program | retrained perplexity | seeds | recall accuracy | context use | "
          "retrained fitness |")
    print("|---|---:|---|---:|---:|---:|")
    named = [(name, r) for name, r in ref.items() if r]
    named += [(f"{arm} winner (#{a['winner']['id']})", a["winner"])
              for arm, a in report["arms"].items() if a["winner"]]
    for name, r in named:
        print(f"| {name} | {_f(r['ppl_mean'])} ± {_f(r['ppl_std'])} | "
              f"{', '.join(_f(x) for x in r['ppl_runs'])} | {_f(r['recall_accuracy'])} | "
              f"{_f(r['context_use'], '+.3f')} | {_f(r['mean'], '.4g')} |")
    print()
    print("| arm | median best search fitness | compute ratio vs Transformer | "
          "mean top-k Spearman | mean sample Spearman | top 10 keeping attention |")
    print("|---|---:|---:|---:|---:|---:|")
    for arm, a in report["arms"].items():
        cr = a["compute_ratio"] or {}
        ratio = _f(cr.get("ratio"), ".2f") + "x" if cr.get("ratio") else "not reached"
        print(f"| {arm} | {_f(a['median_best_search_fitness'])} | {ratio} | "
              f"{_f(a['fidelity_top_mean'], '.2f')} | {_f(a['fidelity_sample_mean'], '.2f')} | "
              f"{a['top10_keep_attention']} of {a['top10']} |")
    if report["proxy_fidelity"]:
        print()
        print("| proxy: steps of training | Spearman with the final perplexity |")
        print("|---:|---:|")
        for p in report["proxy_fidelity"]:
            print(f"| {p['steps']} | {_f(p['spearman'], '.2f')} (n={p['programs']}) |")
    print()
    for name, v in report["verdict"].items():
        print(f"{name}: {'PASS' if v['pass'] else 'MISS'} "
              f"({', '.join(f'{k}={_f(x)}' for k, x in v.items() if k != 'pass')})")
    print()
    for s in report["searches"]:
        if s["arm"] == "evolution":
            for t in s["top"]:
                print(f"evolution seed {s['seed']} #{t['id']}: search {t['search_fitness']:.4g}, "
                      f"retrained ppl {_f(t['ppl_mean'])}, recall {_f(t['recall_accuracy'])}: "
                      f"{'; '.join(t['modifications']) or 'same ops as the seed'}")
    for arm, a in report["arms"].items():
        if a["winner"]:
            print(f"\n{arm} winner #{a['winner']['id']}: "
                  f"{'; '.join(a['winner']['modifications']) or 'same ops as the seed'}")
            print(a["winner"]["diff"] or "(no change from the Transformer seed)")


def write_report(report: dict, out: Path, as_json: bool, print_tables,
                 name: str = "report.json") -> int:
    """``out/NAME``, and the report on standard output: as JSON, or as tables."""
    (out / name).write_text(json.dumps(report, indent=1, default=str))
    if as_json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print_tables(report)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--out", required=True, help="folder for stores, figures and winners "
                   "(a rerun with the same folder resumes)")
    p.add_argument("--arms", help=f"comma-separated, of {', '.join(ARMS)}")
    for name in ("search_seeds", "top", "retrain_seeds", "factor", "curve_points",
                 "fidelity_top", "fidelity_sample", "fidelity_searches"):
        p.add_argument("--" + name.replace("_", "-"), type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the profile's search config (every arm)")
    p.add_argument("--searches-only", action="store_true",
                   help="run the searches and report them alone (no retraining, no figures)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    profile = PROFILES[args.profile]
    changes = {k: getattr(args, k) for k in ("search_seeds", "top", "retrain_seeds", "factor",
                                              "curve_points", "fidelity_top", "fidelity_sample",
                                              "fidelity_searches")
               if getattr(args, k) is not None}
    if args.arms:
        arms = tuple(a.strip() for a in args.arms.split(","))
        bad = [a for a in arms if a not in ARMS]
        if bad:
            p.error(f"unknown arm(s) {', '.join(map(repr, bad))}; expected of {', '.join(ARMS)}")
        changes["arms"] = arms
    profile = dataclasses.replace(profile, **changes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summaries: dict = {}
    stores = run_searches(profile, out, args.set, summaries)
    if args.searches_only:
        report = search_report(stores, summaries)
        return write_report(report, out, args.json, print_search_report, "searches.json")
    if profile.ladder:
        climbs = climb(profile, stores, out, args.set)
        report = analyse_ladder(profile, stores, climbs, out, args.set)
        report["fidelity_to_top_rung"] = ladder_fidelity(profile, stores, args.set, out=out)
        report["proxy_choice"] = choose_proxy(report["fidelity_to_top_rung"])
        return write_report(report, out, args.json, print_ladder_table)
    plan = plan_retrains(profile, stores)
    done = run_retrains(profile, plan, out, args.set)
    report = analyse(profile, stores, plan, done, out)
    return write_report(report, out, args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
