"""The command line as a whole: global flags on either side of the command, `latest` for
the newest store, `--json` on every command that prints results, errors blamed on what
was wrong, and nothing left on disk by a command that fails. Stores are built by hand,
so nothing here trains."""

import json
import logging
import os
import time

import pytest
from toys import TINY_TRAINING, seed_store

from primer_search.cli import main
from primer_search.search.config import load_config
from primer_search.search.store import Store


def _store(path, fitness=(900.0, 800.0)):
    """A tiny_cpu store holding the seeds transformer (1) and primer_ez (2, child of 1)."""
    return seed_store(path, TINY_TRAINING, list(zip(("transformer", "primer_ez"), fitness)),
                      chain=True)


def _listing(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- global flags ---------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--log-level", "debug", "seeds"],
                                  ["seeds", "--log-level", "debug"]])
def test_global_flags_before_or_after_the_command(argv, capsys):
    assert main(argv) == 0
    assert logging.getLogger("primer_search").level == logging.DEBUG
    assert "transformer" in capsys.readouterr().out
    assert main(["seeds"]) == 0  # not given anywhere: the default
    assert logging.getLogger("primer_search").level == logging.WARNING


def test_version_after_the_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["top", "--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("primer-search ")


COMMANDS = ["search", "prepare", "top", "show", "lineage", "dashboard", "retrain", "plot",
            "export", "train", "show-dna", "seeds", "ops"]


@pytest.mark.parametrize("argv", [[]] + [[c] for c in COMMANDS])
def test_help_is_plain_text(argv, capsys):
    """Help is read in a terminal: no reStructuredText markup from the docstrings."""
    with pytest.raises(SystemExit) as e:
        main(argv + ["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("usage: primer-search")
    for markup in ("``", ":func:", ":class:", ".. "):
        assert markup not in out, (argv, markup)


def test_bad_global_flag_after_the_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["seeds", "--log-level", "loud"])
    assert e.value.code == 2 and "--log-level" in capsys.readouterr().err


# ---- latest ---------------------------------------------------------------------------

def test_latest_is_the_newest_store_here(here, capsys):
    old, new = _store(here / "a.sqlite"), _store(here / "b.sqlite", (700.0, 600.0))
    (here / "notes.sqlite").write_bytes(b"not a store")  # skipped
    os.utime(old, (time.time() - 100, time.time() - 100))
    os.utime(new, (time.time() - 50, time.time() - 50))
    os.utime(here / "notes.sqlite")
    assert main(["top", "latest", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [r["fitness"] for r in json.loads(out)] == [600.0, 700.0]
    assert "latest store is" in err and "b.sqlite" in err
    for argv in (["show", "latest", "1", "--json"], ["lineage", "latest", "2", "--json"]):
        assert main(argv) == 0, argv
        assert "b.sqlite" in capsys.readouterr().err
    assert main(["top", "latest", "--json"]) == 0  # still b: reading writes nothing


def test_latest_with_no_store_here_is_one_line_exit_1(here, capsys):
    (here / "notes.sqlite").write_bytes(b"not a store")
    before = _listing(here)
    for argv in (["top", "latest"], ["show", "latest", "1"], ["lineage", "latest", "1"],
                 ["plot", "latest", "--out", "figs"], ["retrain", "latest"],
                 ["export", "latest", "1", "--out", "exported"],
                 ["search", "--resume", "latest"]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "`latest`" in err and "no" in err, (argv, err)
    assert _listing(here) == before


def test_a_file_named_latest_is_a_path(here, capsys):
    _store(here / "latest")
    assert main(["top", "latest", "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 2 and "latest store is" not in err


# ---- errors blamed on what was wrong ------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("fitness.model.d_modle=3", "unknown key 'fitness.model.d_modle' (did you mean "
                                "'fitness.model.d_model'?)"),
    ("fitness.budget.steps=-1", "budget.steps must be >= 1"),
    ("pool.workers=0", "workers must be >= 1, got 0"),
])
def test_a_bad_override_is_blamed_not_the_file(override, message, here, capsys):
    argv = ["search", "tiny_cpu", "--set", "limits.max_candidates=3", "--set", override,
            "--set", "evaluator=\"toy\"", "--store", "new/dir/s.sqlite"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"primer-search: error: --set {override}: ") and message in err, err
    assert "tiny_cpu.toml" not in err
    assert _listing(here) == set()  # nor the store's folder


def test_a_bad_file_is_still_blamed_on_the_file(here, capsys):
    (here / "bad.toml").write_text("version = 2\n[pool]\nworkers = 0\n")
    assert main(["search", "bad.toml", "--set", "limits.max_candidates=3"]) == 2
    assert capsys.readouterr().err.startswith("primer-search: error: bad.toml: pool.workers must")


def test_a_later_override_that_fixes_an_earlier_one_is_no_error():
    config = load_config("tiny_cpu", ["pool.workers=0", "pool.workers=2"])
    assert config.pool.workers == 2


def test_a_bad_resume_override_is_blamed(here, capsys):
    _store(here / "s.sqlite")
    assert main(["search", "--resume", "s.sqlite", "--set", "max_candidats=5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("primer-search: error: --set max_candidats=5: unknown key "
                          "'max_candidats' (did you mean 'limits.max_candidates'?)"), err


# ---- nothing left behind by a command that fails ------------------------------------

def test_plot_of_a_bad_store_creates_no_folder(here, capsys):
    (here / "bad.sqlite").write_bytes(b"not a store")
    with Store(here / "empty.sqlite", {}):
        pass
    before = _listing(here)
    for store in ("bad.sqlite", "empty.sqlite", "nosuch.sqlite"):
        assert main(["plot", store, "--out", "figs/new"]) == 1, store
        assert capsys.readouterr().err.count("\n") == 1
    assert _listing(here) == before


def test_export_of_a_bad_id_creates_no_folder(here, capsys):
    _store(here / "s.sqlite")
    before = _listing(here)
    assert main(["export", "s.sqlite", "7", "--out", "out/exported"]) == 1
    assert "candidate 7 is not in store s.sqlite" in capsys.readouterr().err
    assert main(["export", "s.sqlite", "1", "--retrained", "--out", "out/exported"]) == 1
    assert "no retrained weights" in capsys.readouterr().err
    assert main(["export", "--dna", "seeds:transformer", "--d-model", "0", "--out", "ex"]) == 2
    assert "--d-model must be >= 1" in capsys.readouterr().err
    assert _listing(here) == before


def test_a_failing_write_removes_only_the_folders_it_made(here, monkeypatch):
    import primer_search.export

    def broken(dna, out_dir, *a, **k):
        (here / out_dir).mkdir(parents=True)
        (here / out_dir / "block.py").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(primer_search.export, "export", broken)
    (here / "kept").mkdir()
    assert main(["export", "--out", "kept/a/b"]) == 1
    assert _listing(here) == {"kept"}


# ---- --json: one document on stdout ---------------------------------------------------

def _json_out(capsys, argv) -> object:
    assert main(argv) == 0, argv
    return json.loads(capsys.readouterr().out)  # the whole of stdout is one document


def test_every_listing_command_prints_json(capsys):
    assert {"name": "transformer"}.items() <= _json_out(capsys, ["seeds", "--json"])[0].items()
    ops = {r["name"]: r for r in _json_out(capsys, ["ops", "--json"])}
    assert ops["ADD"]["arity"] == 2 and ops["ADD"]["params"] is False
    dna = _json_out(capsys, ["show-dna", "seeds:primer_ez", "--prune", "--json"])
    assert dna["pruned"] and "def main" in dna["program"] and len(dna["hash"]) >= 16


def test_store_commands_print_json(here, capsys):
    _store(here / "s.sqlite")
    assert [r["id"] for r in _json_out(capsys, ["top", "s.sqlite", "--json"])] == [2, 1]
    assert _json_out(capsys, ["show", "s.sqlite", "2", "--json"])["parent"] == 1
    assert [r["id"] for r in _json_out(capsys, ["lineage", "s.sqlite", "2", "--json"])] == [2, 1]
    plot = _json_out(capsys, ["plot", "s.sqlite", "--out", "figs", "--json"])
    assert plot["written"] and all((here / p).is_file() for p in plot["written"])
    exported = _json_out(capsys, ["export", "s.sqlite", "2", "--out", "ex", "--json"])
    assert exported["id"] == 2 and exported["weights"] is False
    assert set(exported["written"]) >= {"source", "dna"}
    assert all((here / p).is_file() for p in exported["written"].values())


def test_prepare_prints_json_and_logs_to_stderr(capsys):
    prepared = _json_out(capsys, ["prepare", "tiny_cpu", "--json"])
    assert prepared["corpus"] == "ptb" and prepared["tokens"] > 100_000
