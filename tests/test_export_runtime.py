"""The exported file's own code (primer_search/export_runtime.py), tested as engine code."""

import ast
import inspect
import json
import re
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from primer_search import export, export_runtime
from primer_search.fitness.config import ModelConfig
from primer_search.fitness.data.tokenizers import (
    ByteTokenizer,
    SubwordTokenizer,
    WordTokenizer,
    build_word_vocab,
    train_subword,
)
from primer_search.fitness.model import LanguageModel

CODE_LINE = re.compile(r"^\s*(async\s+def|def|class)\b")


def string_constants(tree):
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_export_py_holds_no_code_in_strings():
    """Every line of the exported file that defines something comes from real code."""
    tree = ast.parse(Path(inspect.getsourcefile(export)).read_text())
    code = [s for s in string_constants(tree) if any(CODE_LINE.match(line) for line in s.splitlines())]
    assert not code, code


def test_the_check_sees_code_in_strings():
    tree = ast.parse('A = """\n\ndef f():\n    pass\n"""\nB = f"    class {name}(x):"\nC = "default"\n')
    flagged = [s for s in string_constants(tree) if any(CODE_LINE.match(line) for line in s.splitlines())]
    assert len(flagged) == 2, flagged


def test_the_runtime_imports_only_what_the_exported_file_may():
    """At the top: flax, jax and numpy (as the exported file imports them) and engine
    functions by name, which export replaces by their source; inside functions: the
    standard library, flax and sentencepiece (for subword models)."""
    tree = ast.parse(inspect.getsource(export_runtime))
    for node in tree.body:
        if isinstance(node, ast.Import):
            assert [n.name.split(".")[0] for n in node.names] in (["flax"], ["jax"], ["numpy"])
        elif isinstance(node, ast.ImportFrom):
            assert node.module.split(".")[0] in ("primer_search", "primitives"), node.module
            for alias in node.names:
                assert alias.asname is None
                assert inspect.isfunction(getattr(export_runtime, alias.name)), alias.name
    nested = {n.name.split(".")[0] for f in tree.body if isinstance(f, ast.FunctionDef)
              for node in ast.walk(f) if isinstance(node, ast.Import) for n in node.names}
    assert nested <= set(sys.stdlib_module_names) | {"flax", "sentencepiece"}, nested


class Identity:
    """The runtime's stand-in block, as the engine's LanguageModel takes a block."""

    def init(self, rng, x):
        return {}

    def apply(self, params, x):
        return x


def test_the_runtime_shell_is_the_engines():
    tokens = np.random.default_rng(0).integers(0, 50, (2, 12)).astype(np.int32)
    engine = LanguageModel(ModelConfig(d_model=export_runtime.D_MODEL, num_layers=2), 50, Identity())
    params = engine.init(3, tokens)
    model = export_runtime.LanguageModel(vocab_size=50, num_layers=2, seed=3)
    variables = model.init(jax.random.key(0), tokens)
    ours = jax.tree_util.tree_leaves(variables["params"])
    assert [np.asarray(a).tolist() for a in ours] == \
        [np.asarray(a).tolist() for a in jax.tree_util.tree_leaves(params)]
    moved = jax.tree_util.tree_map(lambda a: a + 0.1, params)  # trained-looking weights
    logits = model.apply({"params": moved}, tokens)
    ref = engine.apply(moved, tokens)
    assert float(np.linalg.norm(logits - ref) / np.linalg.norm(ref)) < 1e-6


TEXT = "the company said it expects higher  sales\n\n  zzzunknownword rose é\n"
NORMALISED = "the company said it expects higher sales\nzzzunknownword rose é\n"


def write_model(folder, tokenizer, vocab_size):
    (folder / "model.json").write_text(json.dumps({
        "d_model": export_runtime.D_MODEL, "num_layers": 1, "vocab_size": vocab_size,
        "tokenizer": tokenizer}))


def test_load_tokenises_bytes_as_the_engine(tmp_path):
    write_model(tmp_path, "byte", 257)
    model, variables, encode, decode = export_runtime.load(tmp_path)
    assert variables is None and model.vocab_size == 257
    engine = ByteTokenizer()
    assert encode(TEXT).tolist() == engine.encode(TEXT.splitlines()).tolist()
    assert decode(encode(TEXT)) == engine.decode(encode(TEXT)) == NORMALISED


def test_load_tokenises_words_as_the_engine(tmp_path):
    vocab = build_word_vocab(["the company said it rose", "the sales rose"], 100)
    (tmp_path / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    write_model(tmp_path, "word", len(vocab))
    _, _, encode, decode = export_runtime.load(tmp_path)
    engine = WordTokenizer(vocab)
    assert encode(TEXT).tolist() == engine.encode(TEXT.splitlines()).tolist()
    # (as exported files always have: the last sentence end keeps the space before it)
    assert decode(encode(TEXT)) == engine.decode(encode(TEXT)) == \
        "the company said it <unk> <unk> sales\n<unk> rose <unk> \n"


def test_load_tokenises_subwords_as_the_engine(tmp_path):
    pytest.importorskip("sentencepiece")
    lines = [f"the company said it expects {w} sales rose" for w in ("higher", "lower", "flat")] * 50
    sp_model = train_subword(lines, 400)
    (tmp_path / "tokenizer.model").write_bytes(sp_model)
    engine = SubwordTokenizer(sp_model)
    write_model(tmp_path, "subword", engine.vocab_size)
    _, _, encode, decode = export_runtime.load(tmp_path)
    assert encode(TEXT).tolist() == engine.encode(TEXT.splitlines()).tolist()
    assert decode(encode(TEXT)) == engine.decode(encode(TEXT)) == NORMALISED
