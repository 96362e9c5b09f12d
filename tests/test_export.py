"""Export: the standalone Flax module computes what the engine's block computes."""

import random
import subprocess
import sys
import textwrap
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import primitives
from primer_search.export import export, export_source
from primer_search.fitness.config import ModelConfig
from primer_search.fitness.model import build_lm, params_to_bytes
from primer_search.program import seeds
from primer_search.program.compiler import compile_block
from primer_search.program.dna import DNA, Instruction
from primer_search.program.random_programs import random_dna
from primitives import registry
from primitives.spec import Primitive

I = Instruction


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


def _check_logits_without_the_engine(folder, body: str, tmp_path) -> None:
    """Run ``body`` in a new Python in which primer_search and primitives cannot be
    imported, with ``folder`` (an export) first on the path and numpy as ``np``;
    ``body`` sets ``logits``, which must match ``tmp_path / "logits.npy"`` to 1e-5."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["primer_search"] = None   # any import of it now fails
        sys.modules["primitives"] = None
        sys.path.insert(0, {str(folder)!r})
        import numpy as np
    """) + textwrap.dedent(body) + textwrap.dedent(f"""
        ref = np.load({str(tmp_path / "logits.npy")!r})
        err = np.linalg.norm(logits - ref) / np.linalg.norm(ref)
        assert err < 1e-5, err
        print("ok", err)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok")


def test_exported_files_stand_alone(tmp_path):
    lm = build_lm(seeds.get("primer_ez"), ModelConfig(d_model=32, num_layers=2), 50)
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
    _check_logits_without_the_engine(paths["source"].parent, f"""
        import flax.serialization, jax
        import block
        tokens = np.load({str(tmp_path / "tokens.npy")!r})
        model = block.LanguageModel(vocab_size=50, num_layers=2)
        variables = model.init(jax.random.key(0), tokens)
        with open({str(paths["weights"])!r}, "rb") as f:
            variables = flax.serialization.from_bytes(variables, f.read())
        logits = np.asarray(model.apply(variables, tokens))
    """, tmp_path)


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
    from primer_search.search.store import Store

    path = tmp_path / "s.sqlite"
    Store(path, {"fitness": {"model": {"d_model": 32}}}).close()
    assert main(["export", str(path), "7", "--out", str(tmp_path / "o")]) == 1
    assert "7" in capsys.readouterr().err


# ---- every primitive exports as the engine runs it ---------------------------------------

def program_using(op: str) -> DNA:
    """A tiny valid MAIN around one use of ``op``: input 2 is a different state, a constant
    and a non-unit dimension are set, and the op's output is added back to x (fitted to
    its width), so every width the op may return still gives a block."""
    return DNA.of([I("C_MUL", 0, 0, const=-0.5),  # h2: a second input
                   I(op, 0, 2, const=0.7, dim=Fraction(1, 2)),  # h3
                   I("ADD", 0, 3)])


def perturbed(params, seed):
    """Parameters moved off their initial values, so that every one of them matters."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda a: (a + 0.1 * rng.standard_normal(a.shape)).astype(np.float32), params)


@pytest.mark.parametrize("name", primitives.names())
def test_every_primitive_exports_as_the_engine_runs_it(name):
    dna = program_using(name)
    block = compile_block(dna, 32)
    x = jax.random.normal(jax.random.key(1), (2, 8, 32))
    params = perturbed(block.init(0, x), 1)
    ns = load_source(export_source(dna, 32))
    y = ns["Block"]().apply({"params": {"program": params}}, x)
    assert relative_error(y, block.apply(params, x)) < 1e-5
    # ... and its fresh parameters are the engine's, draw for draw.
    fresh = ns["init_program"](7)
    engine = block.init(7, x)
    assert jax.tree_util.tree_structure(fresh) == jax.tree_util.tree_structure(engine)
    for a, b in zip(jax.tree_util.tree_leaves(fresh), jax.tree_util.tree_leaves(engine)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", seeds.names())
def test_exported_init_is_the_engines_for_a_seed(name):
    x = jnp.ones((1, 4, 32))
    ns = load_source(export_source(seeds.get(name), 32))
    fresh = ns["Block"](seed=3).init(jax.random.key(0), x)["params"]["program"]
    engine = compile_block(seeds.get(name), 32).init(3, x)
    assert jax.tree_util.tree_structure(fresh) == jax.tree_util.tree_structure(engine)
    for a, b in zip(jax.tree_util.tree_leaves(fresh), jax.tree_util.tree_leaves(engine)):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_exported_language_model_init_is_the_engines_for_a_seed():
    dna = seeds.get("primer_ez")
    tokens = np.zeros((1, 4), np.int32)
    engine = build_lm(dna, ModelConfig(d_model=32, num_layers=2), 50).init(3, tokens)
    ns = load_source(export_source(dna, 32))
    model = ns["LanguageModel"](vocab_size=50, num_layers=2, seed=3)
    fresh = model.init(jax.random.key(0), tokens)["params"]
    assert jax.tree_util.tree_structure(fresh) == jax.tree_util.tree_structure(engine)
    for a, b in zip(jax.tree_util.tree_leaves(fresh), jax.tree_util.tree_leaves(engine)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Without a seed, Flax's key decides, also under jit.
    a = jax.jit(ns["LanguageModel"](vocab_size=50, num_layers=2).init)(jax.random.key(1), tokens)
    b = ns["LanguageModel"](vocab_size=50, num_layers=2).init(jax.random.key(1), tokens)
    c = ns["LanguageModel"](vocab_size=50, num_layers=2).init(jax.random.key(2), tokens)
    np.testing.assert_array_equal(a["params"]["embed"], b["params"]["embed"])
    assert not np.array_equal(b["params"]["embed"], c["params"]["embed"])


def test_an_instruction_is_one_statement_with_its_dna_line():
    src = export_source(DNA.of([I("C_MUL", 0, 0, const=2.0), I("ADD", 0, 2)]), 8)
    assert "h3 = add(h0, fit_like(h2, h0))  # h3 = ADD(h0, h2)" in src
    assert "h2 = c_mul(h0, 2.0)  # h2 = C_MUL(h0, c=2)" in src


# ---- a new primitive needs nothing in export.py ------------------------------------------

def soft_clip(a, c):
    """c * tanh(a / c): a smooth clip at +-c."""
    return c * jnp.tanh(a / c)


def gate_init(rng, in_width, out_width):
    return {"gate": rng.standard_normal((in_width,), dtype=np.float32)}


def gate(a, params):
    return a * jax.nn.sigmoid(params["gate"])


@pytest.fixture
def throwaway_primitives(monkeypatch):
    """SOFT_CLIP and GATE, registered for one test: the registry is restored after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    primitives.register(Primitive(name="SOFT_CLIP", arity=1, shape=registry.same_width,
                                  fn=soft_clip, reads_const=True, doc="c * tanh(a / c)"))
    primitives.register(Primitive(name="GATE", arity=1, shape=registry.parametric_same_width,
                                  fn=gate, init=gate_init, doc="a * sigmoid(g), g learned"))


def test_a_new_primitive_exports_with_nothing_added_to_export(throwaway_primitives):
    dna = DNA.of([I("SOFT_CLIP", 0, const=1.5), I("GATE", 2), I("ADD", 0, 3)])
    src = export_source(dna, 16)
    assert "def soft_clip(a, c):" in src and "def gate_init(rng, in_width, out_width):" in src
    check_block(dna, 16)
    ns = load_source(src)
    np.testing.assert_array_equal(ns["init_program"](4)["h3_GATE"]["gate"],
                                  compile_block(dna, 16).init(4, jnp.ones((1, 2, 16)))["h3_GATE"]["gate"])


def test_the_throwaway_primitives_are_gone_after_their_test():
    assert not primitives.is_primitive("SOFT_CLIP") and not primitives.is_primitive("GATE")


TEXT = "the company said it expects higher sales\nzzzunknownword rose\n"


@pytest.mark.parametrize("tokenizer, files, decoded", [
    ("word", {"vocab.txt"}, "decode(ids[:3]) == 'the company said'"),
    ("subword", {"tokenizer.model"}, f"decode(ids) == {TEXT!r}"),
])
def test_export_from_a_store_is_usable_on_text_without_the_engine(tmp_path, capsys, tokenizer,
                                                                   files, decoded):
    """A stored candidate's export carries model.json and its tokeniser's vocabulary; the
    exported file's load() tokenises text as the search did and gives the engine's logits.
    A --d-model that does not match the stored weights is refused."""
    from primer_search.cli import main
    from primer_search.fitness.data import DataConfig, load_dataset
    from primer_search.fitness.results import EvalResult
    from primer_search.program.validate import dna_hash
    from primer_search.search.config import config_to_dict, load_config
    from primer_search.search.loop import weights_folder
    from primer_search.search.store import Store

    cfg = load_config("tiny_cpu", ["fitness.model.d_model=16", "fitness.model.num_layers=1",
                                   f"fitness.data.tokenizer={tokenizer}",
                                   "fitness.data.vocab_size=2000"])
    data = load_dataset(DataConfig(**config_to_dict(cfg)["fitness"]["data"]))
    dna = seeds.get("primer_ez")
    lm = build_lm(dna, ModelConfig(d_model=16, num_layers=1), data.vocab_size)
    text = TEXT
    tokens = data.tokenizer.encode(text.splitlines())[None]
    if tokenizer == "word":
        assert tokens[0].tolist() == [data.vocab.index(w) if w in data.vocab else 1 for w in
                                      "the company said it expects higher sales <eos> <unk> "
                                      "rose <eos>".split()]
    params = lm.init(5, tokens)
    np.save(tmp_path / "logits.npy", np.asarray(lm.apply(params, tokens)))
    store_path = tmp_path / "s.sqlite"
    with Store(store_path, config_to_dict(cfg)) as store:
        cid = store.add(dna=dna, parent_id=None, mutation="seed", dna_hash=dna_hash(dna))
        store.finish(cid, EvalResult(fitness=400.0, status="ok"))
    weights_folder(store_path).mkdir()
    (weights_folder(store_path) / f"{cid}.msgpack").write_bytes(params_to_bytes(params))

    assert main(["export", str(store_path), str(cid), "--d-model", "32", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "does not match the stored weights" in capsys.readouterr().err
    out = tmp_path / "exported"
    assert main(["export", str(store_path), str(cid), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"block.py", "program.dna", "weights.msgpack",
                                               "model.json"} | files
    _check_logits_without_the_engine(out, f"""
        import block
        model, variables, encode, decode = block.load()
        ids = encode({text!r})
        assert ids.tolist() == {tokens[0].tolist()!r}, ids
        assert {decoded}
        logits = np.asarray(model.apply(variables, ids[None]))
    """, tmp_path)
