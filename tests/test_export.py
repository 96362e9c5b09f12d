"""Export: the standalone Flax module computes what the engine's block computes."""

import random
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from primer_search import seeds
from primer_search.compiler import compile_block
from primer_search.export import export, export_source
from primer_search.model import LMConfig, build_lm
from primer_search.random_programs import random_dna


def load_source(src: str) -> dict:
    namespace: dict = {}
    exec(compile(src, "<exported>", "exec"), namespace)  # noqa: S102 - our own generated code
    return namespace


def relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_block(dna, d_model, seed=0):
    block = compile_block(dna, d_model)
    x = jax.random.normal(jax.random.key(seed), (2, 8, d_model))
    params = block.init(seed, x)
    ns = load_source(export_source(dna, d_model))
    y = ns["Block"]().apply({"params": {"program": params}}, x)
    ref = block.apply(params, x)
    finite = np.isfinite(np.asarray(ref))
    np.testing.assert_array_equal(finite, np.isfinite(np.asarray(y)))
    assert relative_error(np.where(finite, y, 0), np.where(finite, ref, 0)) < 1e-5


@pytest.mark.parametrize("name", seeds.names())
def test_exported_seeds_match_the_engine(name):
    check_block(seeds.get(name), 64)


@pytest.mark.parametrize("chunk", range(5))
def test_exported_random_programs_match_the_engine(chunk):
    for i in range(10):
        check_block(random_dna(random.Random(5000 + 10 * chunk + i)), 32, seed=i)


@pytest.mark.parametrize("name", ["primer_ez", "monarch_mixer", "rwkv"])
def test_exported_module_initialises_fresh_with_the_engine_shapes(name):
    ns = load_source(export_source(seeds.get(name), 32))
    x = jnp.ones((1, 4, 32))
    fresh = ns["Block"]().init(jax.random.key(0), x)["params"]["program"]
    engine = compile_block(seeds.get(name), 32).init(0, x)
    shapes = jax.tree_util.tree_map(lambda a: a.shape, (fresh, engine))
    assert shapes[0] == shapes[1]
    # Deterministic starts are the engine's exactly; random ones have its spread.
    for (_, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(fresh),
                              jax.tree_util.tree_leaves_with_path(engine)):
        assert np.std(np.asarray(a)) == pytest.approx(np.std(np.asarray(b)), rel=0.35, abs=1e-6)


def test_every_exported_seed_passes_ruff(tmp_path):
    for name in seeds.names():
        (tmp_path / f"{name}.py").write_text(export_source(seeds.get(name), 32))
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", str(tmp_path)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def test_exported_files_stand_alone(tmp_path):
    cfg = LMConfig(vocab_size=50, d_model=32, num_layers=2)
    lm = build_lm(seeds.get("primer_ez"), cfg)
    tokens = np.random.default_rng(0).integers(0, 50, (2, 12)).astype(np.int32)
    params = lm.init(3, tokens)
    np.save(tmp_path / "tokens.npy", tokens)
    np.save(tmp_path / "logits.npy", np.asarray(lm.apply(params, tokens)))
    paths = export(seeds.get("primer_ez"), tmp_path / "out", 32, lm_params=params)
    assert {p.name for p in paths.values()} == {"block.py", "weights.msgpack", "program.dna"}
    subprocess.run([sys.executable, "-m", "py_compile", str(paths["source"])], check=True)
    imports = {line.split()[1].split(".")[0] for line in paths["source"].read_text().splitlines()
               if line.startswith(("import ", "from "))}
    assert imports == {"flax", "jax", "numpy"}, imports
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated",
                           str(paths["source"])], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    script = textwrap.dedent(f"""
        import sys
        sys.modules["primer_search"] = None   # any import of it now fails
        sys.modules["primitives"] = None
        sys.path.insert(0, {str(paths["source"].parent)!r})
        import flax.serialization, jax, numpy as np
        import block
        tokens = np.load({str(tmp_path / "tokens.npy")!r})
        model = block.LanguageModel(vocab_size=50, num_layers=2)
        variables = model.init(jax.random.key(0), tokens)
        with open({str(paths["weights"])!r}, "rb") as f:
            variables = flax.serialization.from_bytes(variables, f.read())
        logits = np.asarray(model.apply(variables, tokens))
        ref = np.load({str(tmp_path / "logits.npy")!r})
        err = np.linalg.norm(logits - ref) / np.linalg.norm(ref)
        assert err < 1e-5, err
        print("ok", err)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok")


def test_cli_export_and_plain_optax_training(tmp_path, capsys):
    from primer_search.cli import main

    out = tmp_path / "exported"
    assert main(["export", "--dna", "seeds:primer_ez", "--d-model", "32", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "block.py" in captured.out and "initialise fresh" in captured.err
    script = str(__import__("pathlib").Path(__file__).parent.parent / "examples" / "train_exported.py")
    run = subprocess.run([sys.executable, script, str(out), "--steps", "60"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    losses = [float(line.split()[-1]) for line in run.stdout.splitlines() if "loss" in line]
    assert losses[-1] < 0.6 * losses[0], losses


def test_cli_export_refuses_a_bad_id(tmp_path, capsys):
    from primer_search.cli import main
    from primer_search.store import Store

    path = tmp_path / "s.sqlite"
    Store(path, {"fitness": {"model": {"d_model": 32}}}).close()
    assert main(["export", str(path), "7", "--out", str(tmp_path / "o")]) == 2
    assert "7" in capsys.readouterr().err
