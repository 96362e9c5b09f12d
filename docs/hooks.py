"""MkDocs hook: adds the reference pages generated from the code (the command line, the
config keys, the shipped configs, the primitives, the seeds) to the site at build time.
The generators live in :mod:`primer_search.docs_reference`, which the tests call too."""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the checkout's code, installed or not
    sys.path.insert(0, str(ROOT))


def on_files(files, config):
    from primer_search import docs_reference

    for path, markdown in docs_reference.pages().items():
        files.append(File.generated(config, path, content=markdown))
    return files
