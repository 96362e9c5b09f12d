"""The documentation site: its generated reference against the code it is generated from,
a strict MkDocs build, and the examples the pages show (the hand-written seed, the TOML
configs, the README's links).

The reference pages come from :mod:`primer_search.docs_reference`; these tests walk the
parser, the config dataclasses and the primitive registry on their own and check that
the pages name everything they find.
"""

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

from primer_search import docs_reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SEED_EXAMPLE = ROOT / "examples" / "my_block.txt"


def _sections(markdown: str, level: int) -> dict[str, str]:
    """Heading text -> the Markdown under it (to the next heading of that level or above)."""
    out, title, lines = {}, None, []
    marks = tuple("#" * n + " " for n in range(1, level + 1))
    for line in markdown.splitlines():
        if line.startswith(marks) and not line.startswith("#" * (level + 1)):
            if title is not None:
                out[title] = "\n".join(lines)
            title, lines = line.lstrip("#").strip(), []
        else:
            lines.append(line)
    if title is not None:
        out[title] = "\n".join(lines)
    return out


def _cells(row: str) -> list[str]:
    """A Markdown table row's cells; a pipe inside a code span is no separator."""
    cells, cell, code = [], "", False
    for ch in row.strip().strip("|"):
        if ch == "`":
            code = not code
        if ch == "|" and not code and not cell.endswith("\\"):
            cells.append(cell.strip())
            cell = ""
        else:
            cell += ch
    return cells + [cell.strip()]


def _commands(parser: argparse.ArgumentParser):
    """Every (sub)command parser below ``parser``, at any depth, with its depth."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _commands(sub)


def test_cli_reference_names_every_command_and_option():
    from primer_search.cli import build_parser

    parser = build_parser()
    page = docs_reference.cli_reference(parser)
    sections = {}
    for level in (2, 3, 4):
        sections.update(_sections(page, level))
    commands = list(_commands(parser))
    assert len(commands) >= 12
    for sub in [parser] + commands:
        title = f"`{sub.prog}`"
        assert title in sections, f"no section for {sub.prog}"
        body = sections[title]
        assert f"usage: {sub.prog}" in body
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            names = action.option_strings or [action.metavar or action.dest]
            for name in names:
                assert re.search(rf"`\[?{re.escape(name)}[\] `]", body), \
                    f"{sub.prog}: {name} is not in its reference"
            if action.help:
                assert action.help.split()[0] in body, f"{sub.prog} {names}: help missing"
    # The command index links every command.
    for sub in commands:
        assert f"[`{sub.prog.split()[-1]}`](#" in page


def _leaf_keys(cls: type, prefix: str = "") -> dict[str, object]:
    """Every leaf field of config dataclass ``cls``: dotted key -> default."""
    hints = typing.get_type_hints(cls)
    out = {}
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            out.update(_leaf_keys(hints[field.name], f"{prefix}{field.name}."))
        elif field.default is not dataclasses.MISSING:
            out[f"{prefix}{field.name}"] = field.default
        else:
            out[f"{prefix}{field.name}"] = field.default_factory()
    return out


def test_config_reference_names_every_key_with_its_default_and_comment():
    from primer_search.search.config import SearchConfig

    page = docs_reference.config_reference()
    rows = {}
    for line in page.splitlines():
        m = re.match(r"\| `([\w.]+)`", line)
        if m:
            rows[m.group(1)] = line
    keys = _leaf_keys(SearchConfig)
    assert "fitness.recall.weight" in keys and "evolution.mutation.spec.call_prob" in keys
    assert set(rows) == set(keys), (set(keys) ^ set(rows))
    for key, default in keys.items():
        cells = _cells(rows[key])
        assert cells[2] == f"`{docs_reference.format_default(default)}`", (key, cells[2])
        assert len(cells[3]) > 10, f"{key} has no comment in its dataclass"
    # Spot checks of what the source says beside a field, a shared comment among them.
    assert "`0.2`" not in rows["fitness.recall.weight"]  # the default, not tiny_cpu's
    assert "`1.0`" in rows["fitness.recall.weight"]
    assert "CPU cores and GPUs reserved per worker" in rows["pool.gpus_per_worker"]
    titles = [line for line in page.splitlines() if line.startswith("## ")]
    assert "## `[limits]` *resumable*" in titles and "## `[pool]` *resumable*" in titles
    assert "## `[seeding]`" in titles and "## `[fitness]`" in titles
    assert "`SCHEDULES` = " in rows["fitness.optim.schedule"]


@dataclasses.dataclass(frozen=True)
class _Commented:
    """A dataclass whose fields carry comments the ways the configs write them."""

    # Above one field,
    # over two lines.
    one: int = 1
    # Shared by the two fields below it.
    low: int = 0
    high: int = 9
    spaced: str = "#"  # at the end of the line; the '#' in the string is not a comment

    # A blank line before this one: it is its own.
    last: tuple[int, ...] = (
        1, 2)


def test_field_comments_read_the_source():
    assert docs_reference.field_comments(_Commented) == {
        "one": "Above one field, over two lines.",
        "low": "Shared by the two fields below it.",
        "high": "Shared by the two fields below it.",
        "spaced": "at the end of the line; the '#' in the string is not a comment",
        "last": "A blank line before this one: it is its own.",
    }


@dataclasses.dataclass(frozen=True)
class _Step:
    """One rung."""

    # Width of this rung.
    width: int
    # Steps at it.
    steps: int = 100


@dataclasses.dataclass(frozen=True)
class _Inner:
    """A nested table."""

    # How deep.
    depth: int = 2


@dataclasses.dataclass(frozen=True)
class _Root:
    """A config with a table and a list of tables."""

    # A nested table.
    inner: _Inner = _Inner()
    # The rungs, in order.
    ladder: tuple[_Step, ...] = (_Step(64), _Step(128, 300))
    # A plain key.
    name: str = "x"


def test_config_reference_walks_tables_and_lists_of_tables():
    page = docs_reference.config_reference(_Root)
    assert "## `[inner]`" in page and "| `inner.depth` | `int` | `2` | How deep. |" in page
    assert ('| `ladder` | `tuple[_Step, ...]` | `[{width = 64, steps = 100}, '
            '{width = 128, steps = 300}]` | The rungs, in order. |') in page
    assert "## `[[ladder]]`" in page
    assert "| `ladder[].width` | `int` | `(required)` | Width of this rung. |" in page
    assert "| `name` | `str` | `\"x\"` | A plain key. |" in page


def test_primitive_reference_names_every_primitive():
    import primitives

    page = docs_reference.primitive_reference()
    for name in primitives.names():
        rows = [line for line in page.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, name
        prim = primitives.get(name)
        cells = _cells(rows[0])
        assert ("in2" in cells[1]) == (prim.arity == 2)
        assert ("parameters" in cells[3]) == prim.has_params
        assert ("mixes positions" in cells[3]) == prim.mixes_sequence
        assert cells[4], name


def test_seed_reference_names_every_seed_and_its_program():
    from primer_search.program import seeds

    page = docs_reference.seed_reference()
    for name in seeds.names():
        assert f"\n## {name}\n" in page
        assert str(seeds.get(name)).rstrip() in page


def test_api_reference_names_every_public_function_and_method():
    from primer_search import api

    page = docs_reference.api_reference()
    for name in api.__all__:
        assert f"`{name}`" in page, name
    for member in ("rows", "candidates", "best", "top", "lineage", "program", "config"):
        assert f"`Results.{member}`" in page, member


def test_mkdocs_build_strict(tmp_path):
    """The site builds with every warning an error (dead links and anchors, pages left
    out of the navigation, a missing snippet), the generated pages among it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    # Not --quiet: MkDocs counts the warnings that --strict turns into a failure only
    # among those it logs, so --quiet would let a broken link pass.
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--site-dir", str(site)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert "primer-search search" in cli and "--resume" in cli
    assert "fitness.recall.hinge_weight" in (site / "reference" / "config" / "index.html").read_text()
    seed_page = (site / "how-to" / "write-a-seed" / "index.html").read_text()
    assert "SQUARE" in seed_page and "--8&lt;--" not in seed_page  # the file was included
    # Nothing in the built site reaches for the network at view time (fonts are off).
    assert "fonts.googleapis.com" not in (site / "index.html").read_text()


def test_ci_builds_the_site_strictly():
    ci = (ROOT / ".ci" / "run").read_text()
    build = [line for line in ci.splitlines() if "mkdocs build" in line]
    assert build and "--strict" in build[0] and "--quiet" not in build[0], build


def test_hand_written_seed_in_the_docs_loads_and_seeds_a_search(tmp_path):
    """The seed the how-to writes by hand is the file it includes; it parses as a DNA, it
    is the Transformer with the edits the page describes, and a search starts from it."""
    from primer_search.cli import main
    from primer_search.fitness.toy import ToyEvaluator
    from primer_search.program import seeds
    from primer_search.program.validate import load_dna
    from primer_search.search.config import config_to_dict, load_config
    from primer_search.search.loop import SearchLoop
    from primer_search.search.pool import InProcessPool
    from primer_search.search.store import Store

    page = (DOCS / "how-to" / "write-a-seed.md").read_text()
    assert '--8<-- "examples/my_block.txt"' in page
    dna = load_dna(SEED_EXAMPLE)
    transformer = seeds.get("transformer")
    assert dna.subprograms[1:] == transformer.subprograms[1:]  # only MAIN was edited
    text = str(dna)
    assert "h7 = CONV_1X1(h6, dim=3d)" in text and "h9 = SQUARE(h8)" in text
    assert main(["show-dna", str(SEED_EXAMPLE)]) == 0

    cfg = load_config("tiny_cpu", [
        "evaluator='toy'", "fitness.budget.stages=1", "limits.keep_weights=0",
        "fitness.model.d_model=16", "evolution.population_size=4",
        "evolution.tournament_size=2", "limits.max_candidates=6", "pool.prepare_ahead=0",
        f"seeding.blocks=[{str(SEED_EXAMPLE)!r}]"])
    with Store(tmp_path / "s.sqlite", config_to_dict(cfg)) as store:
        SearchLoop(cfg, store, InProcessPool(ToyEvaluator())).run()
    with Store(tmp_path / "s.sqlite", readonly=True) as store:
        rows = store.all()
    assert len(rows) == 6
    assert rows[0].mutation == f"seed:{SEED_EXAMPLE}" and rows[0].dna == dna
    assert any(r.parent_id is not None for r in rows)  # children of the hand-written seed


def test_toml_configs_in_the_docs_load():
    from primer_search.search.config import config_from_dict

    blocks = 0
    for page in sorted(DOCS.rglob("*.md")):
        for block in re.findall(r"```toml\n(.*?)```", page.read_text(), re.S):
            config_from_dict(tomllib.loads(block), source=str(page))
            blocks += 1
    assert blocks >= 1


def test_readme_links_exist_and_quick_start_stays_first():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert local, "the README links the docs"
    for link in local:
        assert (ROOT / link).exists(), f"README links {link}, which does not exist"
    # The quick start is the first section and its two commands come first.
    commands = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    assert commands[:2] == [
        "python3.11 -m venv .venv && . .venv/bin/activate && pip install -e . && "
        "primer-search search tiny_cpu",
        'python3.11 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && pytest']
    assert readme.index("## Quick start") < readme.index("```bash")
