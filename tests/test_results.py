"""Results and statuses: readers of a store never load the trainer."""

import math
import subprocess
import sys
import textwrap

import pytest

from primer_search.fitness.results import EvalResult, Status
from primer_search.program import seeds
from primer_search.search.store import Store


def test_reading_a_store_imports_no_jax(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path, {"fitness": {}}) as store:
        for i, fitness in enumerate((300.0, 250.0, math.inf)):
            cid = store.add(dna=seeds.get("transformer"), parent_id=None, mutation="seed",
                            dna_hash=f"h{i}", fingerprint=None, seed=0)
            status = Status.OK if math.isfinite(fitness) else Status.NAN
            store.finish(cid, EvalResult(fitness=fitness, status=status,
                                         stage_fitness=(fitness,)))
    code = textwrap.dedent(f"""
        import sys
        from primer_search.cli import main
        assert main(["top", {str(path)!r}]) == 0
        assert main(["top", {str(path)!r}, "--json"]) == 0
        assert main(["top", {str(path)!r}, "--ladder"]) == 0
        assert main(["show", {str(path)!r}, "2"]) == 0
        heavy = sorted(m for m in ("jax", "optax", "flax", "ray") if m in sys.modules)
        print("HEAVY", heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "250" in out.stdout


def test_status_is_a_string_with_its_value():
    assert Status.OK == "ok" and f"{Status.HURDLE}" == "hurdle"
    assert Status("timeout") is Status.TIMEOUT


def test_result_refuses_an_unknown_status_by_name():
    with pytest.raises(ValueError, match="must be one of .*got 'finished'"):
        EvalResult(fitness=1.0, status="finished")


def test_result_round_trips_through_a_dict():
    r = EvalResult(fitness=12.5, status=Status.HURDLE, reason="stopped", steps=7,
                   stage_fitness=(20.0, 12.5))
    d = r.to_dict()
    assert d["status"] == "hurdle" and d["stage_fitness"] == [20.0, 12.5]
    assert EvalResult.from_dict(d) == r and EvalResult.from_dict(d).status is Status.HURDLE


def test_failure_has_the_worst_fitness_and_its_reason():
    r = EvalResult.failure(Status.OOM, "RESOURCE_EXHAUSTED")
    assert r.failed and r.fitness == math.inf and r.status.is_transient()


def test_version_is_the_installed_distributions(capsys):
    import importlib.metadata

    from primer_search.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == (
        f"primer-search {importlib.metadata.version('primer-search')}")
