"""primer-search: evolutionary search for Transformer decoder blocks written as programs.

After Primer (So et al. 2021, arXiv 2109.08668). The public surface:

* :mod:`primer_search.program.dna`: ``DNA``, ``Instruction``, ``DNAError``, ``save_dna``
* :mod:`primer_search.program.validate`: ``validate``, ``load_dna``, ``canonical``, ``dna_hash``,
  ``readable``
* :mod:`primer_search.program.compiler`: ``compile_block``
* :mod:`primer_search.fitness.model`: the LM shell (``build_lm``, with ``ModelConfig``)
* :mod:`primer_search.program.seeds`: the seed blocks
* :mod:`primer_search.api`: ``search(config, store=..., overrides=..., on_result=...)``
  runs a search as the ``search`` command does; ``open_store(path)`` reads one (its
  candidates as a pandas DataFrame, the best, a lineage, a program)
"""

import importlib.metadata

# None of these imports anything heavy: search() loads the trainer and Ray when it runs.
# `search` is the subpackage primer_search.search, callable as primer_search.api.search
# (see its __init__): the package attribute `search` is bound to the subpackage anyway.
from primer_search import search as search
from primer_search.api import Results as Results
from primer_search.api import open_store as open_store
from primer_search.program.dna import DNA as DNA
from primer_search.program.dna import DNAError as DNAError
from primer_search.program.dna import Instruction as Instruction
from primer_search.program.dna import save_dna as save_dna

__all__ = ["DNA", "DNAError", "Instruction", "Results", "load_dna", "open_store", "save_dna",
           "search"]

try:  # the installed distribution's version: pyproject.toml is its one home
    __version__ = importlib.metadata.version("primer-search")
except importlib.metadata.PackageNotFoundError:  # run from a source tree not installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    # load_dna validates against the op vocabulary, which imports JAX; importing the
    # package (as `primer-search top` does) must not.
    if name == "load_dna":
        from primer_search.program.validate import load_dna

        return load_dna
    raise AttributeError(f"module 'primer_search' has no attribute {name!r}")
