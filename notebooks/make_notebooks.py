"""Writes the notebooks in this folder from plain Python cells (run it after editing).

Keeping the cells here keeps the notebooks reviewable as code; the .ipynb files are
generated, without outputs.
"""

from pathlib import Path

import nbformat

HERE = Path(__file__).parent

INSPECT = [
    ("md", "# Inspect a search\n\nOpens a search store with `primer_search.open_store` "
           "(`PRIMER_SEARCH_STORE`, else `latest`: the newest store in this folder or the "
           "one above, where `primer-search search` wrote it) and shows how fitness evolved, "
           "what the winners are, where they came from and what changed along the way."),
    ("code", "import difflib\nimport os\n\nimport matplotlib.pyplot as plt\n\n"
             "import primer_search\n\n"
             "results = primer_search.open_store(os.environ.get('PRIMER_SEARCH_STORE', 'latest'))\n"
             "df = results.candidates()\n"
             "finished = df[df.status != 'pending']\n"
             "print(f'{len(finished)} finished candidates in {results.path}')\n"
             "finished.groupby('status').size()"),
    ("md", "## Fitness against candidate index, with the running best"),
    ("code", "results.plot('fitness');"),
    ("md", "## The population's fitness distribution over time"),
    ("code", "results.plot('population');"),
    ("md", "## Failed, hurdle-stopped and duplicate candidates"),
    ("code", "results.plot('outcomes')\n"
             "finished.loc[finished.reason != '', ['status', 'reason']].head(20)"),
    ("md", "## Pareto fronts: perplexity against step time and against parameters"),
    ("code", "fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))\n"
             "results.plot('pareto_step_time', a)\nresults.plot('pareto_params', b);"),
    ("md", "## The top programs as readable code"),
    ("code", "top = results.top(3)\nfor row in top:\n"
             "    print(f\"#{row['id']}  fitness {row['fitness']:.4g}  ({row['mutation']})\")\n"
             "    print(results.program(row['id']))"),
    ("md", "## The lineage of the best, and its diff against its seed"),
    ("code", "best = top[0]['id']\nchain = results.lineage(best)\n"
             "results.plot('lineage', cid=best)\n"
             "seed = int(chain['id'].iloc[-1])\n"
             "print(f'#{best} against its seed #{seed}, instruction by instruction:')\n"
             "diff = difflib.unified_diff(str(results.program(seed)).splitlines(),\n"
             "                            str(results.program(best)).splitlines(),\n"
             "                            f'seed #{seed}', f'best #{best}', lineterm='', n=0)\n"
             "print('\\n'.join(diff))\n"
             "chain[['id', 'fitness', 'mutation']]"),
]

EXPORT = [
    ("md", "# Export the best block and train it with plain Flax and optax\n\n"
           "Exports the best candidate of a store (`PRIMER_SEARCH_STORE`, else `latest`) "
           "with `Results.export`. The exported module imports only jax, flax and numpy."),
    ("code", "import importlib.util\nimport os\nimport tempfile\nfrom pathlib import Path\n\n"
             "import jax\nimport jax.numpy as jnp\nimport numpy as np\nimport optax\n\n"
             "import primer_search\n\n"
             "results = primer_search.open_store(os.environ.get('PRIMER_SEARCH_STORE', 'latest'))\n"
             "best = results.best()\n"
             "out = Path(tempfile.mkdtemp()) / 'exported'\n"
             "paths = results.export(best['id'], out)\n"
             "print({kind: path.name for kind, path in paths.items()})"),
    ("code", "print((out / 'block.py').read_text()[:1500])"),
    ("code", "spec = importlib.util.spec_from_file_location('exported_block', out / 'block.py')\n"
             "block = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(block)\n"
             "model = block.LanguageModel(vocab_size=64, num_layers=2)\n\n"
             "def batches(seed=0):\n    rng = np.random.default_rng(seed)\n    while True:\n"
             "        start = rng.integers(0, 64, (16, 1))\n"
             "        stride = rng.integers(1, 4, (16, 1))\n"
             "        yield ((start + stride * np.arange(33)) % 64).astype(np.int32)\n\n"
             "data = batches()\nparams = model.init(jax.random.key(0), next(data)[:, :-1])\n"
             "optimizer = optax.adamw(3e-3)\nopt_state = optimizer.init(params)\n\n"
             "@jax.jit\ndef step(params, opt_state, batch):\n    def loss_fn(p):\n"
             "        logits = model.apply(p, batch[:, :-1])\n"
             "        return optax.softmax_cross_entropy_with_integer_labels("
             "logits, batch[:, 1:]).mean()\n"
             "    loss, grads = jax.value_and_grad(loss_fn)(params)\n"
             "    updates, opt_state = optimizer.update(grads, opt_state, params)\n"
             "    return optax.apply_updates(params, updates), opt_state, loss\n\n"
             "losses = []\nfor _ in range(int(os.environ.get('TRAIN_STEPS', 60))):\n"
             "    params, opt_state, loss = step(params, opt_state, jnp.asarray(next(data)))\n"
             "    losses.append(float(loss))\nprint(losses[0], '->', losses[-1])\n"
             "assert losses[-1] < losses[0]"),
]


FROM_PYTHON = [
    ("md", "# A search from Python, read as a DataFrame\n\n"
           "Runs a short search with `primer_search.search` and reads its store with "
           "`primer_search.open_store`. It uses the toy evaluator (a stand-in fitness of the "
           "program's shape, no training) so that it runs in seconds; drop the `evaluator` "
           "override, and raise `limits.max_candidates`, for a real search of `tiny_cpu`. Needs the "
           "`dataframe` extra (pandas)."),
    ("code", "import primer_search\n\n"
             "seen = []\n"
             "summary = primer_search.search(\n"
             "    'tiny_cpu', store='from_python.sqlite',\n"
             "    overrides=[\"evaluator='toy'\", 'fitness.budget.stages=1', 'pool.workers=1',\n"
             "               'limits.max_candidates=12'],\n"
             "    on_result=lambda row: seen.append(row['id']))\n"
             "print(f'{summary.finished} finished candidates, best #{summary.best_id}; '\n"
             "      f'on_result heard of {len(seen)}')"),
    ("md", "## Every candidate as a row"),
    ("code", "results = primer_search.open_store('from_python.sqlite')\n"
             "df = results.candidates()\n"
             "df[['id', 'parent', 'status', 'fitness', 'mutation']].head(12)"),
    ("code", "df.groupby('status').size()"),
    ("md", "## The best, where it came from, and its program"),
    ("code", "best = results.best()\n"
             "print(best['id'], best['fitness'], best['mutation'])\n"
             "print(list(results.lineage(best['id'])['id']))\n"
             "print(results.program(best['id']))"),
]


def write(name, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else
                nbformat.v4.new_code_cell(src) for kind, src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("inspect_search.ipynb", INSPECT)
    write("export_and_train.ipynb", EXPORT)
    write("search_from_python.ipynb", FROM_PYTHON)
