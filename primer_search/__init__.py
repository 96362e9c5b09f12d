"""primer-search: evolutionary search for Transformer decoder blocks written as programs.

After Primer (So et al. 2021, arXiv 2109.08668). The public surface, every name in
``__all__``:

* searching and reading results (:mod:`primer_search.api`): ``search(config,
  store=..., overrides=..., on_result=...)`` runs a search as the ``search`` command
  does; ``open_store(path)`` reads one as a ``Results`` (its candidates as a pandas
  DataFrame, the best, a lineage, a program, its figures, an export)
* programs (:mod:`primer_search.program.dna`, :mod:`primer_search.program.validate`):
  ``DNA``, ``Instruction``, ``DNAError``, ``save_dna``, ``load_dna`` (a DNA file or a
  program's text), ``validate``, ``canonical``, ``dna_hash``, ``readable``
* the seed blocks (:mod:`primer_search.program.seeds`): ``seeds.get(name)``,
  ``seeds.names()``
* compiling and training shells: ``compile_block(dna, d_model)``
  (:mod:`primer_search.program.compiler`) and the LM shell ``build_lm(dna, config,
  vocab_size)`` with its ``ModelConfig`` (:mod:`primer_search.fitness.model`)

Importing the package loads no JAX, Ray or pandas: the names that need JAX
(``load_dna`` and ``validate`` check programs against the op vocabulary) are imported
when first used.
"""

import importlib
import importlib.metadata

# `search` is the subpackage primer_search.search, callable as primer_search.api.search
# (see its __init__): the package attribute `search` is bound to the subpackage anyway.
from primer_search import search as search
from primer_search.api import Results as Results
from primer_search.api import open_store as open_store
from primer_search.fitness.config import ModelConfig as ModelConfig
from primer_search.program.dna import DNA as DNA
from primer_search.program.dna import DNAError as DNAError
from primer_search.program.dna import Instruction as Instruction
from primer_search.program.dna import save_dna as save_dna

# Public names whose modules import JAX, with their homes: loaded on first use.
_LAZY = {
    "load_dna": "primer_search.program.validate",
    "validate": "primer_search.program.validate",
    "canonical": "primer_search.program.validate",
    "dna_hash": "primer_search.program.validate",
    "readable": "primer_search.program.validate",
    "compile_block": "primer_search.program.compiler",
    "build_lm": "primer_search.fitness.model",
    "seeds": "primer_search.program",
}

__all__ = sorted(["DNA", "DNAError", "Instruction", "ModelConfig", "Results", "open_store",
                  "save_dna", "search", *_LAZY])

try:  # the installed distribution's version: pyproject.toml is its one home
    __version__ = importlib.metadata.version("primer-search")
except importlib.metadata.PackageNotFoundError:  # run from a source tree not installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    if name in _LAZY:
        if name == "seeds":
            return importlib.import_module("primer_search.program.seeds")
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'primer_search' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
