"""The Python API: a search run from Python, as the command runs it, and its store read
back as rows, a DataFrame, the best, a lineage and programs. The toy evaluator scores
candidates without training."""

import subprocess
import sys

import pytest
from toys import TOY as SHARED_TOY

import primer_search
from primer_search.api import COLUMNS
from primer_search.program import seeds
from primer_search.search.store import Store, StoreError

TOY = [*SHARED_TOY, "pool.workers=1"]


def test_importing_the_package_loads_nothing_heavy():
    code = ("import sys, primer_search; primer_search.search; primer_search.open_store; "
            "print(sorted(m for m in ('jax', 'ray', 'pandas', 'optax', 'flax') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_public_names_are_the_docstrings_and_resolve():
    """``__all__`` is what the package's docstring lists, and every name in it resolves
    (those that need JAX on first use) to the object its home module defines."""
    import re

    documented = set(re.findall(r"``(\w+)(?:[(.][^`]*)?``", primer_search.__doc__))
    assert set(primer_search.__all__) == documented - {"__all__"}
    from primer_search.fitness.model import build_lm
    from primer_search.program import seeds as seeds_module
    from primer_search.program.compiler import compile_block
    from primer_search.program.validate import load_dna

    assert primer_search.build_lm is build_lm and primer_search.compile_block is compile_block
    assert primer_search.load_dna is load_dna and primer_search.seeds is seeds_module
    for name in primer_search.__all__:
        assert getattr(primer_search, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        _ = primer_search.nosuch


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A toy search of 10 candidates from a seed written as text, and its rows as
    on_result saw them."""
    import ray

    folder = tmp_path_factory.mktemp("api")
    seed = folder / "seed.txt"
    seed.write_text(str(seeds.get("primer_ez")))
    rows = []
    summary = primer_search.search("tiny_cpu", store=folder / "s.sqlite",
                                   overrides=TOY + ["limits.max_candidates=10", f'seeding.blocks=["{seed}"]'],
                                   on_result=rows.append)
    yield summary, rows
    ray.shutdown()


def test_search_runs_as_the_command_does_and_reports_each_candidate(searched):
    summary, rows = searched
    assert summary.finished == len(rows) == 10
    assert all(tuple(row) == COLUMNS for row in rows)
    assert rows[0]["mutation"] == f"seed:{summary.store.removesuffix('s.sqlite')}seed.txt"
    assert {row["status"] for row in rows} <= {"ok", "duplicate", "invalid"}
    with Store(summary.store, readonly=True) as store:
        assert sorted(row["id"] for row in rows) == [c.id for c in store.finished()]


def test_open_store_reads_candidates_best_lineage_and_programs(searched):
    summary, rows = searched
    results = primer_search.open_store(summary.store)
    df = results.candidates()
    assert list(df.columns) == list(COLUMNS) and len(df) == 10
    assert df.loc[rows[-1]["id"], "fitness"] == pytest.approx(rows[-1]["fitness"], nan_ok=True)
    assert {"recall_accuracy", "context_use", "step_ms", "params"} <= set(df.columns)
    best = results.best()
    assert best["id"] == summary.best_id and best["fitness"] == summary.best_fitness
    chain = results.lineage(best["id"])
    assert chain["id"].iloc[0] == best["id"] and chain["parent"].isna().iloc[-1]
    assert str(df["parent"].dtype) == "Int64"     # ids stay integers beside missing ones
    assert results.program(1) == seeds.get("primer_ez")
    assert [r["id"] for r in results.top(3)][0] == best["id"]


def test_search_takes_a_config_object_with_overrides(tmp_path):
    from primer_search.search.config import load_config

    config = load_config("tiny_cpu", TOY)
    summary = primer_search.search(config, store=tmp_path / "c.sqlite",
                                   overrides=["limits.max_candidates=3"])
    assert summary.finished == 3
    assert primer_search.open_store(summary.store).config["limits"]["max_candidates"] == 3


def test_a_missing_store_fails_at_open(tmp_path):
    with pytest.raises(StoreError):
        primer_search.open_store(tmp_path / "nothing.sqlite")


def test_without_pandas_the_dataframe_says_how_to_get_it(searched, monkeypatch):
    summary, _ = searched
    results = primer_search.open_store(summary.store)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'primer-search\[dataframe\]'"):
        results.candidates()
    assert len(results.rows()) == 10  # rows need no pandas


def test_latest_opens_the_newest_store_and_plots_draw_by_name(searched, monkeypatch, tmp_path):
    summary, _ = searched
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="no search store"):
        primer_search.open_store()
    monkeypatch.chdir(summary.store.removesuffix("s.sqlite"))
    results = primer_search.open_store()  # "latest": the only store here
    assert results.path.resolve() == primer_search.open_store(summary.store).path.resolve()
    ax = results.plot("fitness")
    assert ax.collections and ax.get_title().startswith("Fitness")
    assert results.plot("population").get_title().endswith("(last 16 finished)")
    with pytest.raises(ValueError, match="no figure 'nope'.*expected one of fitness"):
        results.plot("nope")


def test_export_writes_a_module_that_loads_and_bad_input_leaves_nothing(searched, tmp_path):
    summary, _ = searched
    results = primer_search.open_store(summary.store)
    best = results.best()["id"]
    with pytest.warns(UserWarning, match="no trained weights are stored"):  # the toy trains none
        paths = results.export(best, tmp_path / "out" / "winner")
    assert set(paths) >= {"source", "dna"}
    assert "class Block" in paths["source"].read_text()
    from primer_search.program.validate import dna_hash

    assert dna_hash(primer_search.load_dna(paths["dna"])) == dna_hash(results.program(best))
    for bad, match in ((dict(d_model=0), "d_model must be a positive integer, got 0"),
                       (dict(d_model="64"), "got '64'")):
        with pytest.raises(ValueError, match=match):
            results.export(best, tmp_path / "new" / "folder", **bad)
    assert not (tmp_path / "new").exists()  # no folder for an export that was refused
    from primer_search.export import export

    with pytest.raises(ValueError, match=r"lm_config lacks \['tokenizer', 'vocab_size'\]"):
        export(results.program(best), tmp_path / "new" / "folder", 64, lm_config={"num_layers": 2})
    assert not (tmp_path / "new").exists()
