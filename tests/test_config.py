"""Search configs: bundled files load, unknown keys and bad values are named."""

from fractions import Fraction
from pathlib import Path

import pytest

from primer_search.search.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)

CONFIGS = sorted(p.stem for p in (Path(__file__).parent.parent / "search_configs")
                 .glob("*.toml"))


@pytest.mark.parametrize("name", CONFIGS)
def test_bundled_configs_load_and_round_trip(name):
    cfg = load_config(name)
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_bundled_configs_are_the_promised_ones():
    assert {"tiny_cpu", "gpu_small", "primer_lm1b"} <= set(CONFIGS)
    paper = load_config("primer_lm1b")
    assert (paper.fitness.model.d_model, paper.fitness.model.num_layers) == (512, 6)
    assert (paper.evolution.population_size, paper.evolution.tournament_size) == (100, 10)
    # Four hurdles passing half each (five stages), 8 heads, a wall-clock budget.
    assert paper.fitness.budget.stages == 5 and paper.fitness.budget.pass_rate == 0.5
    assert paper.fitness.budget.seconds is not None and paper.seeding.heads == 8
    from primer_search.search.config import seed_dnas
    (_, dna), = seed_dnas(paper)
    assert dna.subprograms[0].instructions[1].heads == 8


def test_overrides_apply_with_types():
    cfg = load_config("tiny_cpu", ["fitness.budget.steps=7", "pool.workers=1",
                                   "seeding.blocks=['primer_ez']"])
    assert cfg.fitness.budget.steps == 7 and cfg.pool.workers == 1 and cfg.seeding.blocks == ("primer_ez",)
    assert apply_overrides({}, ["a.b=hello"]) == {"a": {"b": "hello"}}


@pytest.mark.parametrize("override, message", [
    (["pool.wokers=2"], r"unknown key 'pool.wokers' \(did you mean 'pool.workers'\?\); "
                        r"\[pool\] takes accelerator_type, "),
    (["workers=2"], r"unknown key 'workers' \(since config version 2 it is 'pool.workers'\); "
                    "the top level takes "),
    (["pool.workers=0"], "pool.workers must be >= 1, got 0"),
    (["version=3"], r"version must be 2 \(this engine's config format\), got 3"),
    (["fitness.budget.stepz=2"], r"unknown key 'fitness.budget.stepz' \(did you mean "
                                 r"'fitness.budget.steps'\?\); \[fitness.budget\] takes "
                                 r"check_every, .*steps"),
    (["fitness.model.colour='red'"], r"unknown key 'fitness.model.colour'; "
                                     r"\[fitness.model\] takes d_model"),
    (["pool.workers='two'"], "workers"),
    (["fitness.budget.steps=0"], "budget.steps must be >= 1 or None, got 0"),
    (["seeding.blocks=['gpt9']"], "unknown seed blocks \\['gpt9'\\]"),
    (["evaluator='magic'"], "evaluator must be 'train' or 'toy', got 'magic'"),
    (["fitness.data.corpus='wiki'"], "wiki"),
])
def test_bad_keys_and_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny_cpu", override)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file 'nope.toml' does not exist; expected "
                       "a TOML file or the name of a shipped config \\(efficacy_cpu, "):
        load_config("nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("workers = = 2")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="--set expects key=value"):
        load_config("tiny_cpu", ["workers"])


def test_seeds_take_heads_and_d_ff_from_the_config_and_may_be_dna_files(tmp_path):
    from primer_search.program import seeds
    from primer_search.program.dna import save_dna
    from primer_search.search.config import seed_dnas

    cfg = load_config("tiny_cpu", ["seeding.blocks=['transformer', 'rwkv']", "seeding.heads=2",
                                   "seeding.d_ff='8/3'"])
    (_, transformer), (_, rwkv) = seed_dnas(cfg)
    assert transformer == seeds.get("transformer", heads=2, d_ff=Fraction(8, 3))
    assert rwkv == seeds.get("rwkv", d_ff=Fraction(8, 3))    # no heads to take
    path = tmp_path / "best.dna"
    save_dna(seeds.get("primer_ez"), path)
    from_file = load_config("tiny_cpu", [f"seeding.blocks=['{path}']"])
    assert seed_dnas(from_file) == [(str(path), seeds.get("primer_ez"))]
    with pytest.raises(ConfigError, match="unknown seed blocks"):
        load_config("tiny_cpu", ["seeding.blocks=['no_such_block']"])
    with pytest.raises(ConfigError, match="seeding.d_ff must be a positive number"):
        load_config("tiny_cpu", ["seeding.d_ff='x'"])


def test_a_wheel_ships_its_configs(tmp_path):
    """Installed from a wheel (no source tree beside it), `tiny_cpu` still loads; the
    wheel names its license by SPDX expression and carries the LICENSE file."""
    import os
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "-q"]
    build = subprocess.run(pip + ["wheel", str(root), "--no-deps", "-w", str(wheels)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("primer_search-*.whl"))
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert {f"primer_search/search_configs/{c}.toml" for c in CONFIGS} <= names
        assert not any(n.startswith("search_configs/") for n in names)  # not a package of its own
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        assert "License-Expression: Apache-2.0" in zf.read(meta).decode().splitlines()
        assert any(n.endswith("licenses/LICENSE") for n in zf.namelist())
    install = subprocess.run(pip + ["install", "--no-deps", "--target", str(site), str(wheel)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    code = ("import primer_search, sys\n"
            "from primer_search.search.config import load_config\n"
            "assert primer_search.__file__.startswith(sys.argv[1]), primer_search.__file__\n"
            "cfg = load_config('tiny_cpu')\n"
            "print(cfg.limits.max_candidates, cfg.fitness.model.d_model)\n")
    run = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["40", "64"]


def test_loading_a_config_imports_no_jax():
    """Reading a config (as `top`, `show` and the dashboard do, from a store) is plain
    data: every shipped config loads, converts and resolves its ladder rungs without
    JAX, Ray or the op vocabulary."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from primer_search.search.config import (config_from_dict, config_to_dict,\n"
            "    load_config, rung_fitness, shipped_configs)\n"
            "for name in shipped_configs():\n"
            "    cfg = config_from_dict(config_to_dict(load_config(name)))\n"
            "    for rung in cfg.ladder.rungs:\n"
            "        rung_fitness(cfg, rung)\n"
            "print(sorted(m for m in ('jax', 'flax', 'optax', 'ray', 'primitives')\n"
            "             if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_mutation_names_are_the_mutation_table():
    from primer_search.program.generation import MUTATION_NAMES
    from primer_search.program.mutations import MUTATIONS

    assert tuple(MUTATIONS) == MUTATION_NAMES


def test_pyproject_lists_every_package():
    """pyproject.toml lists its packages (one is mapped from the top-level search_configs/);
    a new subpackage of the source tree must be added there, or a wheel would lack it."""
    import tomllib

    from setuptools import find_packages

    root = Path(__file__).parent.parent
    listed = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = find_packages(str(root), include=["primer_search*", "primitives*"])
    assert sorted(listed) == sorted(found + ["primer_search.search_configs"])


def test_the_kuberay_example_submits_a_command_this_version_accepts():
    """examples/kuberay_rayjob.yaml: a RayJob whose entrypoint parses with this CLI and
    names a shipped config with valid overrides, and whose store is on the head's volume."""
    import shlex

    import yaml

    from primer_search.cli import build_parser

    path = Path(__file__).parent.parent / "examples" / "kuberay_rayjob.yaml"
    job, claim = list(yaml.safe_load_all(path.read_text()))
    assert (job["kind"], claim["kind"]) == ("RayJob", "PersistentVolumeClaim")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "primer-search"
    args = build_parser().parse_args(argv[1:])
    load_config(args.config, args.set)
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    assert any(args.store.startswith(m + "/") for m in mounts), (args.store, mounts)


V1_TOML = """
seeds = ["transformer", "primer_ez"]
seed_heads = 2
workers = 2
max_candidates = 12
candidate_timeout_s = 90.0
hurdle_min_history = 5
seed = 3

[fitness.budget]
steps = 20
"""

V2_TOML = """
version = 2
seed = 3

[seeding]
blocks = ["transformer", "primer_ez"]
heads = 2

[pool]
workers = 2

[limits]
max_candidates = 12
candidate_timeout_s = 90.0

[hurdles]
min_history = 5

[fitness.budget]
steps = 20
"""


def test_a_version_1_file_reads_as_its_version_2_equal(tmp_path):
    """A flat config (version 1, as stores created before the sections keep) loads as the
    sectioned one; where both spell a key, the section wins."""
    from primer_search.search.versions import config_version, upgrade

    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text(V1_TOML)
    new.write_text(V2_TOML)
    assert load_config(old) == load_config(new)
    assert load_config(old).version == 2
    assert config_version({"workers": 1}) == 1 and config_version({"hurdle_quantile": 0.5}) == 0
    both = upgrade({"workers": 1, "pool": {"workers": 4}})
    assert both == {"pool": {"workers": 4}, "version": 2}


def test_what_a_resume_may_change_is_a_property_of_its_section():
    from primer_search.search.config import ResumeError, resumable_sections, resume_overrides

    assert resumable_sections() == ["pool", "limits", "ladder"]
    stored = config_to_dict(load_config("tiny_cpu"))
    merged = resume_overrides(stored, {"pool": {"workers": 1}, "limits": {"max_candidates": 99}})
    assert merged["pool"]["workers"] == 1 and merged["limits"]["max_candidates"] == 99
    with pytest.raises(ResumeError, match=r"a resume cannot change seeding.heads .*A resume "
                       r"may change only the sections pool, limits, ladder"):
        resume_overrides(stored, {"seeding": {"heads": 8}})
    # A version-1 store's flat keys are resumable by their new names.
    flat = {"workers": 2, "max_candidates": 10, "seeds": ["transformer"]}
    assert resume_overrides(flat, {"pool": {"workers": 1}})["pool"]["workers"] == 1
    with pytest.raises(ResumeError, match="earlier version of primer-search"):
        resume_overrides({"hurdle_quantile": 0.5}, {})
