"""Smoke tests for the benchmarks: the compile/step benchmark runs and reports its figures,
and the hand-written Flax reference Transformer trains."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toys import TINY_TRAINING, as_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

from flax_transformer import FlaxLM, params_from_dna

from primer_search.fitness.config import ModelConfig, OptimConfig
from primer_search.fitness.model import build_lm
from primer_search.fitness.train import make_optimizer, make_steps
from primer_search.program import seeds


def test_benchmark_scripts_import_the_installed_engine_without_editing_sys_path():
    """A script imports the engine as installed (``pip install -e .``, or PYTHONPATH as
    the GPU check sets it) and its siblings from its own folder, which Python puts first
    on the path when it runs a script; none edits ``sys.path``."""
    from pathlib import Path

    scripts = sorted(Path(BENCH).glob("*.py"))
    assert len(scripts) >= 15
    assert [p.name for p in scripts if "sys.path" in p.read_text()] == []


def test_compile_and_step_quick_json():
    """``compile_and_step.py --quick --json`` (about 30 s on 2 idle CPU cores).

    The subprocess inherits the test environment (conftest's XLA_FLAGS lowers XLA's
    optimisation level), so only the plumbing is checked here, not the speed."""
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "compile_and_step.py"), "--quick", "--json"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout)
    for key in ("compile_s_median", "step_ratio_vs_flax", "peak_rss_mb"):
        value = res[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
    assert res["compile_timed"] >= 1
    assert res["equivalence"]["flax"]["match"] is True, res["equivalence"]


def test_layer_loop_quick_json():
    """``layer_loop.py --quick --json`` (about 20 s): both forms of the shell compile and
    step, and compute the same first loss."""
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "layer_loop.py"), "--quick", "--json"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout)
    assert res["failures"] == 0 and len(res["records"]) == 4, res["records"]
    for key in ("compile_ratio_median", "step_ratio_median", "step_ms_median_loop"):
        assert math.isfinite(res[key]) and res[key] > 0, (key, res[key])
    assert res["loss_max_abs_diff"] < 1e-4
    assert res["engine_unroll"] == (2 if jax.default_backend() == "cpu" else 1)


def test_layer_loop_times_the_programs_of_a_store(tmp_path):
    """``layer_loop.py --store``: each distinct program of a search once, at the search's
    own model size and vocabulary."""
    from layer_loop import conv_block

    from primer_search.search.config import config_to_dict, load_config
    from primer_search.search.store import Store

    config = config_to_dict(load_config("efficacy_cpu", ["fitness.model.d_model=16",
                                                         "fitness.data.batch_size=2"]))
    path = tmp_path / "search.sqlite"
    with Store(path, config) as store:
        store.add(dna=conv_block(3), parent_id=None, mutation="seed", dna_hash="a")
        store.add(dna=seeds.get("transformer"), parent_id=1, mutation="m", dna_hash="b")
        store.add(dna=seeds.get("transformer"), parent_id=1, mutation="m", dna_hash="b")
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "layer_loop.py"), "--store", str(path),
         "--steps", "1", "--repeats", "1", "--json"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout)
    assert [r["program"] for r in res["records"]] == ["#1", "#2"]
    assert res["config"]["d_model"] == 16 and res["config"]["batch"] == 2
    assert res["config"]["vocab"] > 256  # the byte corpus: 256 bytes and its specials
    assert res["loss_max_abs_diff"] < 1e-4


def test_flax_reference_trains():
    model = FlaxLM(ModelConfig(d_model=32, num_layers=2), 64)
    opt = make_optimizer(OptimConfig(learning_rate=3e-3, warmup_steps=5))
    init_state, train_step, _ = make_steps(model, opt)
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 64, (4, 17)), jnp.int32)
    state = init_state(0, batch)
    losses = []
    for _ in range(30):
        state, metrics = train_step(state, batch)
        losses.append(float(metrics["loss"]))
    assert all(math.isfinite(v) for v in losses)
    # Memorising one small batch: the loss should fall well below its start (~log 64).
    assert losses[-1] < 0.5 * losses[0], losses


def test_flax_reference_matches_dna_seed():
    cfg = (ModelConfig(d_model=32, num_layers=2), 50)
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, 50, (2, 12)), jnp.int32)
    dna_lm = build_lm(seeds.get("transformer"), *cfg)
    params = dna_lm.init(0, tokens)
    params = jax.tree_util.tree_map(lambda a: a + 0.05, params)  # LN scale/bias off 1/0
    want = dna_lm.apply(params, tokens)
    for scan in (True, False):
        got = FlaxLM(*cfg, scan=scan).apply(params_from_dna(params, scan=scan), tokens)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_zoo_quick_json():
    """``zoo.py --quick --json`` on two seed blocks (about 15 s on 2 idle CPU cores): a row
    per (budget, block), every run trained and its figures finite and positive."""
    blocks = ["transformer", "primer_ez"]
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "zoo.py"), "--quick", "--json",
         "--blocks", ",".join(blocks)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout)
    config, rows = res["config"], res["rows"]
    assert config["blocks"] == blocks and config["seeds"] == 1 and config["corpus"] == "ptb"
    assert (config["d_model"], config["layers"]) == (64, 2)  # the tiny_cpu fitness settings
    budgets = [f"{config['steps']} steps", f"{config['seconds']:g} s"]
    assert [(r["budget"], r["block"]) for r in rows] == [(b, k) for b in budgets for k in blocks]
    for r in rows:
        assert r["runs"] == r["seeds"] == config["seeds"] and not r["failed"], r
        assert r["params"] > 0, r
        ppl, tokens_per_s = r["valid_ppl"][0], r["tokens_per_s"][0]
        assert math.isfinite(ppl) and ppl > 0, r
        assert math.isfinite(tokens_per_s) and tokens_per_s > 0, r
        assert r["steps"][0] >= 1 and r["step_ms"][0] > 0, r
    assert rows[0]["steps"][0] == config["steps"]  # the step budget is reached exactly


def _run_json(script, *args):
    proc = subprocess.run([sys.executable, os.path.join(BENCH, script), *args, "--json"],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def test_trainer_sweep_runs_its_grid():
    res = _run_json("trainer_sweep.py", "--profile", "tiny_cpu", "--steps", "3", "--seeds", "1",
                    "--blocks", "transformer", "--grid", "schedule=constant,wsd")
    assert [r["setting"]["schedule"] for r in res["rows"]] == ["constant", "wsd"]
    assert min(r["gap_to_best"] for r in res["rows"]) == 0.0
    assert all(math.isfinite(r["mean"]) for r in res["rows"])


def test_fitness_noise_reports_a_threshold():
    res = _run_json("fitness_noise.py", "--seeds", "2", "--mutants", "1",
                    *as_flags([*TINY_TRAINING, "fitness.budget.steps=3"]))
    assert [r["program"] for r in res["rows"]] == ["transformer", "primer_ez", "mutant1"]
    summary = res["summary"]
    assert summary["smallest_difference"] == pytest.approx(
        1.96 * math.sqrt(2) * summary["pooled_std"])


def test_loop_ceiling_runs_the_real_loop_to_its_limit(tmp_path):
    from search_throughput import loop_ceiling

    row = loop_ceiling(40, 8, tmp_path)
    assert row["candidates"] == 40 and row["workers"] == 8
    assert row["loop_ceiling_per_s"] > 0 and 0 < row["dedup_hit_rate"] < 1


def test_gpu_throughput_layouts_share_one_gpu_and_take_the_users_overrides():
    from search_throughput import GPU_LAYOUTS, layout_config

    from primer_search.search.config import ConfigError

    shared = dict(GPU_LAYOUTS)["2 workers x 0.5 GPU, 2 cand"]
    cfg = layout_config(shared, 12, False, "gpu_small", ["fitness.budget.seconds=10"])
    assert (cfg.pool.workers, cfg.pool.gpus_per_worker, cfg.pool.candidates_per_worker) == (2, 0.5, 2)
    assert cfg.fitness.budget.seconds == 10 and cfg.limits.max_candidates == 12
    assert cfg.fitness.model.d_model == 256          # still gpu_small's model
    # every layout asks for no more than the one GPU
    for _, overrides in GPU_LAYOUTS:
        c = layout_config(overrides, 4, False, "gpu_small")
        assert c.pool.workers * c.pool.gpus_per_worker == 1.0
    with pytest.raises(ConfigError, match="unknown key 'fitness.budget.secnds' \\(did you mean "
                       "'fitness.budget.seconds'"):
        layout_config(shared, 4, False, "gpu_small", ["fitness.budget.secnds=10"])


def test_efficacy_statistics_match_references():
    import search_efficacy as eff
    from scipy import stats

    xs = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    ys = [2.0, 7.0, 1.0, 8.0, 2.0, 8.0, 1.0, 8.0]
    assert eff.spearman(xs, ys) == pytest.approx(stats.spearmanr(xs, ys).statistic)
    assert eff.spearman([1, 2], [2, 1]) is None              # too few pairs
    assert eff.spearman([1, 1, 1], [1, 2, 3]) is None        # a constant side
    curve = [(100, 20.0), (200, 12.0), (300, 9.0)]
    assert eff.steps_to_reach(curve, 10.0) == pytest.approx(200 + 100 * 2 / 3)
    assert eff.steps_to_reach(curve, 25.0) == 100.0          # already there at the first point
    assert eff.steps_to_reach(curve, 8.0) is None            # never reached
    assert eff.best_so_far([5.0, math.inf, 3.0, 4.0]) == [5.0, 5.0, 3.0, 3.0]
    ratio = eff.compute_ratio({"curve": curve}, {"curve": [(100, 30.0), (300, 12.0)]})
    assert ratio["ratio"] == pytest.approx(1.5) and ratio["winner_steps"] == 200.0


def test_the_compute_ratio_is_read_for_the_best_winner_that_recalls():
    """A winner with the lowest top-rung perplexity but less recall than the Transformer
    there is passed over; without a recall task at the rung, perplexity alone decides."""
    import search_efficacy as se
    ppl, recall = [37.2, 45.0, 44.0, math.inf], [0.10, 0.50, 0.16, 0.90]
    keeps = [se.keeps_recall(r, 0.16) for r in recall]
    assert keeps == [False, True, True, True]
    assert se.best_that_recalls(ppl, keeps) == 2          # 44.0 (0.16 >= 0.16), not 37.2
    assert se.best_that_recalls(ppl, [se.keeps_recall(r, math.nan) for r in recall]) == 0
    assert se.best_that_recalls(ppl, [False] * 4) is None
    assert not se.keeps_recall(math.nan, 0.16)


def test_the_recall_gate_allows_for_the_noise_of_either_accuracy():
    """A winner whose recall is below the Transformer's by less than twice the noise of
    either keeps recall; by more, or at chance, it does not. The noise is the training
    seeds' spread, or one run's binomial spread over its scored queries where that is
    larger."""
    import search_efficacy as se
    # Two seeds: their sample standard deviation.
    two = {"recall_accuracies": [0.13, 0.17]}
    assert se.recall_spread(two, 8192) == pytest.approx(statistics.stdev([0.13, 0.17]))
    # One seed: the binomial spread of 0.157 over 16 queries x 512 sequences.
    one = {"recall_accuracies": [0.157]}
    assert se.recall_spread(one, 8192) == pytest.approx(math.sqrt(0.157 * 0.843 / 8192))
    assert se.recall_spread({"recall_accuracies": [math.nan]}, 8192) == 0.0
    assert se.recall_spread(None, 8192) == 0.0
    # Within noise: 0.157 against 0.159 at one seed each (the binomial spread, 0.004).
    noise = max(se.recall_spread(one, 8192), se.recall_spread({"recall_accuracies": [0.159]},
                                                               8192))
    assert se.keeps_recall(0.157, 0.159, noise)
    assert not se.keeps_recall(0.157, 0.159)                  # without noise: refused
    # Beyond it: 0.10 against 0.15 with a seed spread of 0.02 (margin 0.04).
    assert not se.keeps_recall(0.10, 0.15, 0.02)
    assert se.keeps_recall(0.12, 0.15, 0.02)
    assert not se.keeps_recall(1 / 64, 0.15, 0.02)            # chance


def test_proxy_choice_weighs_fidelity_by_cost_over_searches():
    """The chosen proxy has the most fidelity to the top rung per second of candidate
    time, averaged over searches; one that misranks the random sample is never chosen,
    however cheap."""
    import search_efficacy as eff

    def row(proxy, top, sample, both, seconds):
        return {"proxy": proxy, "top": top, "sample": sample, "all": both, "top_n": 10,
                "sample_n": 5, "all_n": 15, "seconds_per_candidate": seconds}

    fidelity = {
        "evolution seed 0": [row("search fitness", 0.2, 0.6, 0.5, 10.0),
                             row("proxy: half the steps", 0.1, 0.5, 0.4, 5.0),
                             row("proxy: noise", 0.9, -0.5, 0.9, 1.0),
                             row("rung 1: wide", 0.5, 0.9, 0.8, 40.0)],
        "no_selection seed 0": [row("search fitness", 0.4, 0.8, 0.7, 12.0),
                                row("proxy: half the steps", 0.3, None, 0.6, 7.0),
                                row("proxy: noise", 0.9, -0.1, 0.9, 1.0),
                                row("rung 1: wide", 0.7, 0.9, 0.8, 40.0)]}
    rows = {r["proxy"]: r for r in eff.choose_proxy(fidelity)}
    assert rows["search fitness"]["all"] == pytest.approx(0.6)
    assert rows["search fitness"]["seconds_per_candidate"] == pytest.approx(11.0)
    assert rows["search fitness"]["current"] and rows["search fitness"]["n"] == 30
    half = rows["proxy: half the steps"]
    assert half["sample"] == pytest.approx(0.5)                  # a missing value is skipped
    assert half["fidelity_per_second"] == pytest.approx(0.5 / 6.0)
    assert half["per_second_vs_current"] == pytest.approx((0.5 / 6.0) / (0.6 / 11.0))
    assert [n for n, r in rows.items() if r["chosen"]] == ["proxy: half the steps"]
    assert not rows["proxy: noise"]["chosen"]                    # cheapest, but misranks
    # With the search's own setting retrained, its row is the one compared against (the
    # search's own cost was measured while the next candidate compiled).
    own = {k: v + [row(eff.OWN_SETTING, 0.2, 0.6, 0.5, 4.0)] for k, v in fidelity.items()}
    rows = {r["proxy"]: r for r in eff.choose_proxy(own)}
    assert rows[eff.OWN_SETTING]["current"] and not rows["search fitness"]["current"]
    assert [n for n, r in rows.items() if r["chosen"]] == [eff.OWN_SETTING]
    assert rows["proxy: half the steps"]["per_second_vs_current"] == pytest.approx(
        (0.5 / 6.0) / (0.5 / 4.0))
    # Over the zoo's blocks, a proxy that ranks them against the top rung is not chosen.
    zoo = {**fidelity, eff.ZOO_BLOCKS: [
        {"proxy": "search fitness", "all": 0.7, "all_n": 9},
        {"proxy": "proxy: half the steps", "all": -0.4, "all_n": 9},
        {"proxy": "rung 1: wide", "all": 0.9, "all_n": 9}]}
    rows = {r["proxy"]: r for r in eff.choose_proxy(zoo)}
    assert "zoo blocks" not in [r["proxy"] for r in rows.values()]
    assert rows["proxy: half the steps"]["blocks"] == -0.4
    assert rows["proxy: noise"]["blocks"] is None and rows["proxy: noise"]["blocks_n"] == 0
    assert [n for n, r in rows.items() if r["chosen"]] == ["search fitness"]
    # Nor one whose ranking of the zoo is indistinguishable from none (0.08 over 9 blocks,
    # p = 0.42), however well it ranks the search's own candidates and however cheap:
    # those are all mutants of one seed, the zoo holds the families a search could let in.
    weak = {**zoo, eff.ZOO_BLOCKS: zoo[eff.ZOO_BLOCKS] + [
        {"proxy": "proxy: noise", "all": 0.08, "all_n": 9}]}
    weak = {k: [{**r, "sample": 0.9} if r["proxy"] == "proxy: noise" else r for r in v]
            for k, v in weak.items()}
    rows = {r["proxy"]: r for r in eff.choose_proxy(weak)}
    assert rows["proxy: noise"]["blocks_p"] == pytest.approx(0.4190, abs=1e-3)
    assert rows["search fitness"]["blocks_p"] == pytest.approx(0.0178, abs=1e-3)
    assert [n for n, r in rows.items() if r["chosen"]] == ["search fitness"]
    # With each candidate's pairs, a cheaper proxy replaces the search's own only when
    # its gain holds over resamples of the candidates.
    def ranked(proxy, xs, seconds):
        return {"proxy": proxy, "seconds_per_candidate": seconds, "top": None,
                "sample": 0.5, "all": eff.spearman(xs, list(range(12))), "all_n": 12,
                "pairs": {str(i): [x, float(i)] for i, x in enumerate(xs)}}

    noisy = [1, 0, 3, 2, 6, 4, 5, 9, 7, 8, 11, 10]
    exact = list(range(12))
    sure = {"s": [ranked("search fitness", noisy, 10.0), ranked("proxy: cheap", exact, 5.0)]}
    rows = {r["proxy"]: r for r in eff.choose_proxy(sure)}
    assert rows["proxy: cheap"]["chosen"] and rows["proxy: cheap"]["gain_low"] > 0
    unsure = {"s": [ranked("search fitness", exact, 10.0),
                    ranked("proxy: cheap", [3, 0, 7, 1, 2, 9, 4, 11, 5, 6, 10, 8], 5.5)]}
    rows = {r["proxy"]: r for r in eff.choose_proxy(unsure)}
    assert rows["proxy: cheap"]["fidelity_per_second"] > rows["search fitness"]["fidelity_per_second"]
    assert rows["proxy: cheap"]["gain_low"] < 0 and rows["search fitness"]["chosen"]


def test_ladder_fidelity_weighs_other_proxies_against_the_top_rung(tmp_path):
    """The fidelity table trains a search's top and a sample under each of the profile's
    other proxies (here: language modelling alone) beside every rung, reports each
    proxy's Spearman correlation with the top rung and its seconds, trains nothing
    twice, and refuses a proxy whose settings were edited under the same name."""
    import dataclasses

    import search_efficacy as eff
    from toys import seed_store

    from primer_search.retrain import make_pool
    from primer_search.search.store import Store

    def in_process(cfg, timeout_s):
        return make_pool(cfg, 0, None, None)

    overrides = (*TINY_TRAINING,
                 'ladder.rungs=[{name="wide", candidates=2, seeds=1, fitness={model={'
                 'd_model=32}, budget={steps=6, pass_rate=1.0}}}]')
    path = seed_store(tmp_path / "s.sqlite", overrides, (
        ("transformer", 900.0), ("primer_ez", 800.0), ("transformer_pp", 850.0),
        ("glu", 950.0)))
    profile = eff.Profile("tiny_cpu", overrides=overrides, fidelity_searches=1,
                          fidelity_top=2, fidelity_sample=1, fidelity_proxies=(
                              ("language modelling alone", ("fitness.recall.enabled=false",)),))
    rows = eff.ladder_fidelity(profile, {("evolution", 0): path}, [], in_process)["evolution seed 0"]
    assert [r["proxy"] for r in rows] == ["search fitness", "proxy: language modelling alone"]
    for r in rows:
        assert r["top_n"] == 2 and r["sample_n"] == 1 and r["all_n"] == 3
    assert rows[1]["seconds_per_candidate"] > 0     # the store's seeds are written, not trained
    with Store(path) as store:
        proxy = store.retrain_rows("fidelity proxy: language modelling alone")
        top = store.retrain_rows("fidelity at rung 1: wide")
    assert len(proxy) == 3 and len(top) == 3
    assert all(r.result.recall_steps == 0 for r in proxy)          # recall off, as asked
    assert all(r.result.recall_steps > 0 for r in top)
    assert all(math.isfinite(r.result.perplexity) for r in proxy + top)
    # Again: every run is found done, nothing trains.
    assert eff.ladder_fidelity(profile, {("evolution", 0): path}, [], in_process)["evolution seed 0"] == rows
    edited = dataclasses.replace(profile, fidelity_proxies=(
        ("language modelling alone", ("fitness.budget.steps=5",)),))
    with pytest.raises(ValueError, match="language modelling alone"):
        eff.ladder_fidelity(edited, {("evolution", 0): path}, [], in_process)
    # Blocks of the zoo, in a store of their own: scored at the search budget, then
    # trained at the rung and under the proxy like the search's candidates.
    zoo = dataclasses.replace(profile, fidelity_blocks=("transformer", "primer_ez",
                                                        "dconv_for_attention"))
    out = eff.ladder_fidelity(zoo, {("evolution", 0): path}, [], in_process, out=tmp_path)
    assert out["evolution seed 0"] == rows
    blocks = out[eff.ZOO_BLOCKS]
    assert [r["proxy"] for r in blocks] == [r["proxy"] for r in rows]
    assert all(r["blocks_n"] == 3 and r["all_n"] == 3 for r in blocks)
    with Store(tmp_path / "stores" / "fidelity-blocks.sqlite") as store:
        assert sorted(c.mutation for c in store.all() if c.kind == "search") == [
            "seed:dconv_for_attention", "seed:primer_ez", "seed:transformer"]
        assert len(store.retrain_rows("fidelity at rung 1: wide")) == 3
    assert [r["proxy"] for r in eff.choose_proxy(out)] == [r["proxy"] for r in rows]


def test_search_efficacy_smoke_runs_both_arms_and_resumes(tmp_path):
    """``search_efficacy.py --profile smoke``: two one-search arms of five candidates
    through the Ray controller (``--searches-only`` first: the searches alone, reported
    per search, nothing retrained), then the retraining, figures and winners, which find
    the searches done (about a minute); a third run with the same folder finds
    everything done and reports the same."""
    out = tmp_path / "eff"
    cmd = [sys.executable, os.path.join(BENCH, "search_efficacy.py"), "--profile", "smoke",
           "--out", str(out), "--json"]
    proc = subprocess.run(cmd + ["--searches-only"], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    searched = json.loads(proc.stdout)
    assert json.loads((out / "searches.json").read_text()) == searched
    assert [(r["arm"], r["finished"]) for r in searched["searches"]] == [
        ("evolution", 5), ("no_selection", 5)]
    assert all(r["trained"] + r["duplicates"] + r["failed"] == 5 for r in searched["searches"])
    assert not (out / "retrains.jsonl").exists() and not (out / "report.json").exists()
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "search evolution seed 0: done (5 candidates)" in proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["arms"]) == {"evolution", "no_selection"}
    assert [s["candidates"] for s in report["searches"]] == [5, 5]
    for name in ("transformer", "primer_ez"):
        ref = report["references"][name]
        assert len(ref["runs"]) == 2 and len(ref["curve"]) == 2
    assert set(report["verdict"]) == {"winner_beats_transformer",
                                      "evolution_beats_no_selection", "half_the_steps",
                                      "winner_recalls_as_transformer",
                                      "winner_uses_context_as_transformer"}
    for name in ("transformer", "primer_ez"):   # the smoke profile has the recall task on
        assert 0 <= report["references"][name]["recall_accuracy"] <= 1
    for arm in report["arms"].values():
        assert 0 <= arm["top10_keep_attention"] <= arm["top10"] <= 5
    for arm in ("evolution", "no_selection"):
        assert (out / "stores" / f"{arm}-seed0.sqlite").exists()
        assert (out / "winners" / f"{arm}.dna").exists()
    assert (out / "best_so_far.png").stat().st_size > 0
    assert (out / "retrain_curves.png").stat().st_size > 0
    runs = len((out / "retrains.jsonl").read_text().splitlines())
    again = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "retraining: 0 runs" in again.stderr
    assert len((out / "retrains.jsonl").read_text().splitlines()) == runs
    assert json.loads(again.stdout)["arms"] == report["arms"]


@pytest.mark.slow
def test_search_efficacy_up_a_ladder_smoke(tmp_path):
    """``--profile smoke-ladder``: two reproducible searches per arm, the references and
    each search's best up a two-rung ladder, with the statistics; a rerun trains nothing
    and reports the same (a few minutes: slow)."""
    out = tmp_path / "eff"
    cmd = [sys.executable, os.path.join(BENCH, "search_efficacy.py"), "--profile",
           "smoke-ladder", "--out", str(out), "--json"]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout)
    assert report["rungs"] == ["rung 1: 2x steps", "rung 2: 2x width"]
    assert set(report["references"]) == {"transformer", "primer_ez"}
    for rungs in report["references"].values():
        assert len(rungs) == 2 and all(len(r["perplexities"]) == 2 for r in rungs)
    assert len(report["searches"]) == 4
    for s in report["searches"]:
        assert len(s["rungs"][0]["entrants"]) <= 2 and len(s["rungs"][1]["entrants"]) <= 1
        assert [f["proxy"] for f in s["fidelity"]] == ["search fitness", "rung 1: 2x steps"]
    for arm in ("evolution", "no_selection"):
        assert len(report["arms"][arm]["top_rung_perplexity"]) == 2
        assert len(report["arms"][arm]["recalls_as_transformer"]) == 2
    assert report["selection_test"]["n"] <= 2
    # Seed 0 of each arm measures fidelity: its top 3 and a sample at both rungs.
    fid = report["fidelity_to_top_rung"]
    assert set(fid) == {"evolution seed 0", "no_selection seed 0"}
    for rows in fid.values():
        assert [r["proxy"] for r in rows] == ["search fitness",
                                              "proxy: language modelling alone",
                                              "rung 1: 2x steps"]
        assert all(r["top_n"] <= 3 and r["seconds_per_candidate"] > 0 for r in rows)
    assert [r["proxy"] for r in report["proxy_choice"]] == [
        "search fitness", "proxy: language modelling alone", "rung 1: 2x steps"]
    assert sum(r["chosen"] for r in report["proxy_choice"]) <= 1
    assert set(report["verdict"]) >= {"half_the_steps_at_top_rung",
                                      "a_winner_recalls_as_transformer_at_top_rung",
                                      "primer_ez_above_transformer_every_rung",
                                      "selection_helps"}
    again = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    assert " seed 0: ok" not in again.stderr        # nothing retrained
    assert json.loads(again.stdout)["arms"] == report["arms"]


def test_recall_calibration_separates_and_times_the_tasks():
    """``recall_calibration.py`` at a toy size: every block gets a recall accuracy, a
    perplexity and the cost of the recall task."""
    cmd = [sys.executable, os.path.join(BENCH, "recall_calibration.py"), "--config",
           "efficacy_cpu", "--seeds", "1", "--blocks", "transformer,dconv_for_attention,"
           "local-mixing-51", "--json", "--set", "fitness.budget.steps=5",
           "--set", "fitness.model.d_model=16", "--set", "fitness.data.seq_len=32",
           "--set", "fitness.data.eval_tokens=256", "--set", "fitness.recall.eval_sequences=32"]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout)
    assert report["recall"]["enabled"] and report["recall"]["pairs"] == 8
    assert set(report["results"]) == {"transformer", "dconv_for_attention", "local-mixing-51"}
    for r in report["results"].values():
        assert 0 <= r["recall_accuracy"] <= 1 and r["perplexity"] > 1
        assert r["recall_s"] > 0 and r["cost_ratio"] > 1


# ---- smoke tests of the remaining scripts, each at a toy size -------------------------

def test_fitness_trains_both_seeds_at_both_budgets():
    res = _run_json("fitness.py", "--quick", "--d-model", "16", "--layers", "1",
                    "--seq-len", "16", "--batch-size", "4", "--eval-tokens", "256")
    rows = res["rows"]
    assert [(r["budget"], r["block"]) for r in rows] == [
        (b, k) for b in ("5 steps", "1 s") for k in ("transformer", "primer_ez")]
    for r in rows:
        assert r["runs"] == 1 and not r["failed"] and r["valid_ppl"][0] > 1, r
        assert r["valid_ppl"][1] == 0.0      # one seed: spread 0, the harness's convention


def test_optimizers_compares_both_optimisers_on_both_seeds():
    rows = _run_json("optimizers.py", "--seeds", "1", *as_flags(TINY_TRAINING))
    assert [(r["optimizer"], r["block"]) for r in rows] == [
        (o, b) for o in ("adamw (default)", "adafactor (paper)")
        for b in ("transformer", "primer_ez")]
    for r in rows:
        assert not r["failed"] and len(r["ppl"]) == 1 and r["mean"] == r["ppl"][0] > 1, r


def test_proxy_signal_measures_gap_noise_and_cost():
    res = _run_json("proxy_signal.py", "--seeds", "2", "--steps", "2", "--d-model", "16",
                    "--proxy", "byte, 64 bytes")
    row = res["byte, 64 bytes"]
    assert row["seconds"] > 0 and row["step_ms"] > 0 and row["noise"] >= 0
    assert {b: len(v) for b, v in row["perplexity"].items()} == {"transformer": 2,
                                                                  "primer_ez": 2}
    assert math.isfinite(row["gap"])


def test_tokenizer_choice_measures_what_is_installed(tmp_path):
    corpus = tmp_path / "corpus.txt"
    rng = np.random.default_rng(0)
    words = [f"w{k}" for k in range(300)]
    corpus.write_text("\n".join(" ".join(rng.choice(words, 12)) for _ in range(400)) + "\n")
    rows = _run_json("tokenizer_choice.py", "--vocab-size", "400", "--corpus-path",
                     str(corpus))
    names = [r["tokenizer"] for r in rows]
    assert names[0].startswith("word") and len(names) == 5
    measured = [r for r in rows if "missing" not in r]
    assert any(r["tokenizer"].startswith("sentencepiece") for r in measured)  # a dependency
    for r in measured:
        assert r["train_s"] >= 0 and r["encode_tok_per_s"] > 0 and r["tokens_per_word"] > 0
        if r["tokenizer"].startswith("sentencepiece"):
            assert r["round_trip"] is True, r


def test_data_rate_times_both_streams_from_a_ptb_stand_in():
    res = _run_json("data_rate.py", "--tokens", "20000", "--shards", "2",
                    "--shard-sentences", "2000", "--vocab-size", "512", "--trainer-steps", "0")
    assert res["corpus"] == "PTB stand-in" and res["trainer"] is None
    assert [r["source"] for r in res["streams"]] == [
        f"{t} stream, {read}" for t in ("word", "subword") for read in ("first read", "cached")]
    assert all(r["tokens_per_s"] > 0 for r in res["streams"])


def test_hurdles_runs_a_search_and_retrains_the_stopped(tmp_path):
    res = _run_json("hurdles.py", "--candidates", "8", "--sample", "2", "--out", str(tmp_path),
                    *as_flags([*TINY_TRAINING, "fitness.budget.stages=2",
                               "hurdles.min_history=2", "pool.workers=1",
                               "evolution.population_size=4", "evolution.tournament_size=2"]))
    assert res["candidates"] == 8 and res["stages"] == 2
    assert res["evaluated"] == res["finished"] + res["stopped"] + res["failed"]
    assert res["steps_spent"] <= res["steps_if_all_trained"]
    assert res["sampled_stopped"] == min(2, res["stopped"])
    assert res["stage_fitness_mismatches"] == []   # reruns reproduce the search's stages


def test_mutation_reach_counts_what_children_gain_where():
    """Rates are shares of the children, per search is rate x the config's candidates,
    the aggregate covers every op's row; an unknown seed block is refused by name."""
    res = _run_json("mutation_reach.py", "--children", "300", "--set", "limits.max_candidates=80")
    assert res["children"] == 300 and res["candidates_per_search"] == 80
    assert res["overrides"] == ["limits.max_candidates=80"]
    ops = {r["op"]: r for r in res["rows"]}
    assert "DCONV_3X1" in ops and "DECAY_SUM" in ops and "SQUARE" in ops
    assert "T_MAT_MUL" not in ops                       # attention itself is not a gain
    for r in res["rows"]:
        assert 0 <= r["in_head"] <= 1 and 0 <= r["elsewhere"] <= 1
        assert r["head_per_search"] == pytest.approx(r["in_head"] * 80)
    mixing = [r["in_head"] for r in res["rows"] if r["op"] != "SQUARE"]
    assert max(mixing) <= res["any_mixing_in_head"] <= sum(mixing) + 1e-12
    assert res["any_dconv_in_head"] <= res["any_mixing_in_head"]
    assert res["any_mixing_in_head"] + max(r["elsewhere"] for r in res["rows"]) > 0
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "mutation_reach.py"),
                           "--seed-block", "transformr"], capture_output=True, text=True)
    assert proc.returncode == 2 and "'transformr' is not a seed; known: transformer" in proc.stderr
    # The same stream of children under the shipped op prior and under none: with the
    # prior, more of them gain a sequence-mixing op somewhere.
    flat = _run_json("mutation_reach.py", "--children", "300",
                     "--set", "evolution.mutation.spec.op_weights=[]")

    def gains(report):
        return sum(r["in_head"] + r["elsewhere"] for r in report["rows"] if r["op"] != "SQUARE")
    assert gains(res) > gains(flat)


def test_every_benchmark_script_has_a_smoke_test():
    """Each script in benchmarks/ is run (or imported) by a test in this file."""
    here = Path(__file__).read_text()
    scripts = [p.stem for p in Path(BENCH).glob("*.py") if not p.stem.startswith("_")]
    assert [s for s in scripts if f'"{s}.py"' not in here and f"import {s}" not in here
            and f"from {s} import" not in here] == []
