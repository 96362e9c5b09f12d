"""The notebooks run headless, against a small store the test creates (the search one
makes its own); no cell may raise."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from primer_search.fitness.results import EvalResult  # noqa: E402
from primer_search.program import seeds  # noqa: E402
from primer_search.program.validate import dna_hash  # noqa: E402
from primer_search.search.config import config_to_dict, load_config  # noqa: E402
from primer_search.search.store import Store  # noqa: E402

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


@pytest.mark.parametrize("name", ["inspect_search.ipynb", "export_and_train.ipynb",
                                  "search_from_python.ipynb"])
def test_notebook_runs(name, tmp_path, monkeypatch):
    store = tmp_path / "tiny_cpu-20261130-120000.sqlite"
    cfg = load_config("tiny_cpu", ["fitness.model.d_model=16"])
    with Store(store, config_to_dict(cfg)) as s:
        parent = None
        for i, (block, fitness) in enumerate([("transformer", 500.0), ("primer_ez", 450.0),
                                             ("primer_ez", 430.0), ("transformer", 470.0)]):
            dna = seeds.get(block)
            cid = s.add(dna=dna, parent_id=parent, mutation=f"m{i}", dna_hash=dna_hash(dna))
            s.finish(cid, EvalResult(fitness=fitness, status="ok", step_time_s=0.1 * (i + 1),
                                     num_params=1000 * (i + 1)))
            parent = cid if i == 1 else parent
    # No PRIMER_SEARCH_STORE: the notebooks find the newest store in their folder, as
    # after `primer-search search` (which names it CONFIG-DATE-TIME.sqlite).
    monkeypatch.delenv("PRIMER_SEARCH_STORE", raising=False)
    (tmp_path / "not_a_store.sqlite").write_bytes(b"")  # skipped: not a search store
    monkeypatch.setenv("TRAIN_STEPS", "40")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError if any cell raises
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "finished candidates" in outputs or "->" in outputs
    if name == "search_from_python.ipynb":
        # 12 candidates searched, every one heard of, and the DataFrame has them all.
        assert "12 finished candidates" in outputs and "on_result heard of 12" in outputs
        frames = [o["data"].get("text/plain", "") for c in nb.cells if c.cell_type == "code"
                  for o in c.get("outputs", []) if o.get("output_type") == "execute_result"]
        assert any("duplicate" in f or "ok" in f for f in frames)
