"""primer-search: evolutionary search for Transformer decoder blocks written as programs.

After Primer (So et al. 2021, arXiv 2109.08668). The public surface:

* :mod:`primer_search.program.dna`: ``DNA``, ``Instruction``, ``DNAError``, ``save_dna``
* :mod:`primer_search.program.validate`: ``validate``, ``load_dna``, ``canonical``, ``dna_hash``,
  ``readable``
* :mod:`primer_search.program.compiler`: ``compile_block``
* :mod:`primer_search.fitness.model`: the LM shell (``build_lm``, with ``ModelConfig``)
* :mod:`primer_search.program.seeds`: the seed blocks
"""

import importlib.metadata

from primer_search.program.dna import DNA as DNA
from primer_search.program.dna import DNAError as DNAError
from primer_search.program.dna import Instruction as Instruction
from primer_search.program.dna import save_dna as save_dna

__all__ = ["DNA", "DNAError", "Instruction", "load_dna", "save_dna"]

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
