"""The ``primer-search`` command line. Thin: each command calls the library's functions.

    primer-search search tiny_cpu [--set key=value ...] [--store PATH] | --resume STORE
    primer-search top STORE [-n 10] [--json]        (STORE: a path, or latest: the newest here)
    primer-search show STORE ID [--json]
    primer-search lineage STORE ID [--json]
    primer-search dashboard [STORE ...] [--host 127.0.0.1] [--port 8765]
    primer-search train --dna seeds:primer_ez --corpus ptb --steps 300 [--seconds 60] [--json]
    primer-search show-dna seeds:transformer [--prune] [--json]
    primer-search seeds | ops [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

# What ``primer-search --help`` says first: plain text, as a terminal shows it.
DESCRIPTION = """\
Evolutionary search for Transformer decoder blocks written as programs over tensor
primitives: run a search, inspect what it found, retrain the best, export a winner
as a Flax module."""

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "UsageError", "main"]

# Exit statuses: 0 success; see EXIT_HELP.
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_HELP = """exit status:
  0  success
  1  runtime failure: a missing corpus or store, an unreachable cluster, a refused
     resume (no store at the path, another writer holds it, a change the store does
     not allow), a damaged store, a full disk, a failed candidate in `train`
  2  usage error: a bad flag or flag value, an unknown config key or a value of the
     wrong type"""


class UsageError(ValueError):
    """The command line asks for something that cannot be (exit status 2)."""


def resolve_dna(spec: str):
    """``seeds:NAME`` or a path to a DNA file."""
    from primer_search.program import seeds
    from primer_search.program.validate import load_dna

    if spec.startswith("seeds:"):
        return seeds.get(spec[len("seeds:"):])
    return load_dna(spec)


def _fitness_config(args):
    from primer_search.fitness.config import (
        BudgetConfig,
        FitnessConfig,
        ModelConfig,
        OptimConfig,
        RecallConfig,
    )
    from primer_search.fitness.data import DataConfig, DataError

    optim = {k: v for k, v in (("learning_rate", args.lr), ("warmup_steps", args.warmup),
                               ("schedule", args.schedule), ("optimizer", args.optimizer))
             if v is not None}
    data = {"eval_tokens": args.eval_tokens} if args.eval_tokens is not None else {}
    try:
        return FitnessConfig(
            data=DataConfig(corpus=args.corpus, path=args.path, tokenizer=args.tokenizer,
                            seq_len=args.seq_len, batch_size=args.batch_size, **data),
            model=ModelConfig(d_model=args.d_model, num_layers=args.layers),
            optim=OptimConfig(**optim),
            budget=BudgetConfig(steps=args.steps, seconds=args.seconds, stages=args.stages),
            recall=RecallConfig() if args.recall_pairs is None else
            RecallConfig(enabled=True, pairs=args.recall_pairs,
                         steps=args.steps if args.seconds is not None else None),
            seed=args.seed)
    except DataError:
        raise  # a corpus that is not there: a runtime failure
    except (TypeError, ValueError) as e:  # a flag's value the config refuses
        raise UsageError(str(e)) from None


def cmd_train(args) -> int:
    from primer_search.fitness.evaluate import Evaluator

    dna = resolve_dna(args.dna)
    evaluator = Evaluator(_fitness_config(args))
    result, _ = evaluator.evaluate(dna)
    if args.json:
        print(json.dumps({"dna": args.dna, **result.to_dict()}, default=_json_float))
    else:
        print(f"{args.dna}: {result.status}" + (f" ({result.reason})" if result.reason else ""))
        rows = [("fitness", result.fitness),
                ("validation perplexity", result.perplexity),
                ("word perplexity", result.word_perplexity),
                ("bits per byte", result.bits_per_byte),
                ("train loss", result.train_loss), ("steps", result.steps),
                ("parameters", result.num_params), ("tokens/s", result.tokens_per_s),
                ("step time (ms)", 1000 * result.step_time_s),
                ("context use (nats)", result.context_use),
                ("compile / train / eval (s)",
                 f"{result.compile_s:.1f} / {result.train_s:.1f} / {result.eval_s:.1f}")]
        if result.recall_steps:
            rows[2:2] = [("recall accuracy", result.recall_accuracy),
                         ("recall loss", result.recall_loss),
                         ("recall steps / seconds",
                          f"{result.recall_steps} / {result.recall_s:.1f}")]
        for name, value in rows:
            print(f"  {name:<32} {value:.4g}" if isinstance(value, float) else
                  f"  {name:<32} {value}")
    return 0 if not result.failed else 1


def _json_float(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def cmd_show_dna(args) -> int:
    from primer_search.program.validate import canonical, dna_hash

    dna = resolve_dna(args.dna)
    text = str(canonical(dna) if args.prune else dna)
    if args.json:
        print(json.dumps({"dna": args.dna, "pruned": args.prune, "program": text,
                          "hash": dna_hash(dna)}))
        return 0
    print(text, end="")
    print(f"# hash {dna_hash(dna)[:16]}")
    return 0


def cmd_seeds(args) -> int:
    from primer_search.program import seeds

    rows = [{"name": name, "doc": (seeds._SEEDS[name].__doc__ or "").strip().splitlines()[0]}
            for name in seeds.names()]
    if args.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        print(f"{r['name']:<16} {r['doc']}")
    return 0


def cmd_ops(args) -> int:
    import primitives

    prims = [primitives.get(name) for name in primitives.names()]
    if args.json:
        print(json.dumps([{"name": p.name, "arity": p.arity, "params": p.has_params,
                           "mixes_sequence": p.mixes_sequence, "doc": p.doc} for p in prims]))
        return 0
    for prim in prims:
        flags = ("P" if prim.has_params else "-") + ("S" if prim.mixes_sequence else "-")
        print(f"{prim.name:<12} {prim.arity} {flags}  {prim.doc}")
    print("\narity, P = trainable parameters, S = mixes sequence positions (causal)")
    return 0


# ---- search and its store -------------------------------------------------------------

def cmd_search(args) -> int:
    from primer_search.search.config import apply_overrides, load_config
    from primer_search.search.controller import resume_search, run_search

    if args.address:  # join a cluster started with `ray start`
        args.set.append(f"pool.address={json.dumps(args.address)}")

    # With --json, standard output carries the summary alone: whatever else is printed
    # meanwhile (Ray's messages about lost nodes and workers among it) goes to stderr.
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if args.json else \
        contextlib.nullcontext()
    if args.resume:
        args.resume = _store_arg(args.resume)
        if args.config:
            raise UsageError("give either a CONFIG or --resume STORE, not both")
        overrides = apply_overrides({}, args.set)
        with quiet_stdout:
            summary = resume_search(args.resume, overrides, progress=not args.quiet)
    else:
        if not args.config:
            raise UsageError("search needs a CONFIG (a TOML file or tiny_cpu, gpu_small, "
                             "primer_lm1b) or --resume STORE")
        config = load_config(args.config, args.set)
        store = args.store or time.strftime(f"{Path(args.config).stem}-%Y%m%d-%H%M%S.sqlite")
        with quiet_stdout:
            summary = run_search(config, store, progress=not args.quiet)
    if args.json:
        print(json.dumps(dataclasses.asdict(summary), default=_json_float))
        return 0
    print(f"\nstore {summary.store}: {summary.finished} candidates ({summary.trained} trained, "
          f"{summary.duplicates} duplicates, {summary.failed} failed) in "
          f"{summary.seconds:.0f} s; stopped by {summary.stopped_by}")
    _print_top(summary.store, 5, retrained=False)
    return 0


LATEST = "latest"
STORE_HELP = ("the search's SQLite file, or `latest`: the newest search store in this "
              "folder (named on standard error)")


def _store_arg(spec):
    """A STORE argument as a path: ``latest`` (unless a file has that name) is the newest
    search store in the current folder, named on standard error; none is a StoreError."""
    from primer_search.files import newest_store
    from primer_search.search.store import StoreError

    if spec != LATEST or Path(spec).exists():
        return spec
    try:
        path = newest_store((".",))
    except StoreError:
        raise StoreError(f"`latest` names the newest search store (*.sqlite) in this folder "
                         f"({Path.cwd()}), and there is none; give a STORE path, or run "
                         "`primer-search search CONFIG` here first") from None
    print(f"primer-search: latest store is {path}", file=sys.stderr)
    return str(path)


def _open_store(path):
    from primer_search.search.store import Store

    return Store(path, readonly=True)


def _candidate_row(c) -> dict:
    r = c.result
    return {"id": c.id, "parent": c.parent_id, "status": c.status,
            "fitness": _json_float(c.fitness) if c.fitness is not None else None,
            "perplexity": _json_float(r.perplexity) if r else None,
            "recall_accuracy": _json_float(r.recall_accuracy) if r else None,
            "recall_loss": _json_float(r.recall_loss) if r else None,
            "context_use": _json_float(r.context_use) if r else None,
            "steps": r.steps if r else None, "params": r.num_params if r else None,
            "step_ms": round(1000 * r.step_time_s, 2) if r else None,
            "mutation": c.mutation, "kind": c.kind}


def _print_retrained(rows) -> None:
    print(f"{'id':>6} {'runs':>5} {'mean fitness':>13} {'std':>8}  budget")
    for r in rows:
        print(f"{r.id:>6} {r.runs:>5} {r.mean_fitness:>13.4g} "
              f"{r.std_fitness:>8.3g}  {r.budget or '-'}")


def _ladder_rows(rungs: list[dict], n: int | None = None, only: int | None = None) -> list[dict]:
    """One row per (rung, candidate) of :func:`~primer_search.search.ladder.ladder_results`, the
    best ``n`` of each rung (or candidate ``only``'s rows), for tables and --json."""
    rows = []
    for rung in rungs:
        ranked = list(rung["candidates"].items())
        for place, (cid, r) in enumerate(ranked[:n] if n else ranked, start=1):
            if only is None or cid == only:
                rows.append({"rung": rung["rung"], "label": rung["label"], "place": place,
                             "id": cid, **r})
    return rows


def _print_ladder(rows: list[dict]) -> None:
    print(f"{'rung':<28} {'#':>3} {'id':>6} {'seeds':>5} {'mean fitness':>13} {'std':>8} "
          f"{'LM ppl':>9} {'bits/B':>7} {'recall':>6} {'steps':>6}")
    for r in rows:
        print(f"{r['label'][:28]:<28} {r['place']:>3} {r['id']:>6} {len(r['seeds']):>5} "
              f"{r['mean_fitness']:>13.4f} {r['std_fitness']:>8.3g} {r['perplexity']:>9.4g} "
              f"{r['bits_per_byte']:>7.4f} {_fmt_nan(r['recall_accuracy'], '6.3f')} "
              f"{r['steps']:>6}")


def _fmt_nan(x: float, spec: str) -> str:
    return _fmt(None if x is None or math.isnan(x) else x, spec)


def _print_top(path, n: int, retrained: bool, ladder: bool = False) -> None:
    with _open_store(path) as store:
        if ladder:
            from primer_search.search.ladder import ladder_results

            _print_ladder(_ladder_rows(ladder_results(store), n))
            return
        if retrained:
            from primer_search.stats import summarise_retrains

            _print_retrained(summarise_retrains(store.retrain_runs())[:n])
            return
        print(f"{'id':>6} {'parent':>6} {'fitness':>10} {'LM ppl':>8} {'recall':>6} "
              f"{'context':>7} {'steps':>6} {'params':>9} {'step ms':>8}  mutation")
        for c in store.top(n):
            r = _candidate_row(c)
            print(f"{r['id']:>6} {r['parent'] or '-'!s:>6} {c.fitness:>10.4g} "
                  f"{_fmt(r['perplexity'], '8.4g')} {_fmt(r['recall_accuracy'], '6.3f')} "
                  f"{_fmt(r['context_use'], '+7.3f')} {r['steps']!s:>6} "
                  f"{r['params']!s:>9} {r['step_ms']!s:>8}  {c.mutation[:70]}")


def _fmt(x, spec: str) -> str:
    """``x`` in ``spec``, or a dash as wide for a missing value (a task that did not run)."""
    width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)
    return format(x, spec) if x is not None else "-".rjust(width)


def cmd_prepare(args) -> int:
    from primer_search.fitness.data import load_dataset
    from primer_search.search.config import load_config

    config = load_config(args.config, args.set)
    log = sys.stderr if args.json else sys.stdout  # with --json: the JSON alone on stdout
    t = time.perf_counter()
    data = load_dataset(config.fitness.data)
    print(f"{data!r}: vocabulary ready in {time.perf_counter() - t:.1f} s", flush=True, file=log)

    def progress(done: int, total: int) -> None:
        print(f"tokenised {done} of {total} training shards "
              f"({time.perf_counter() - t:.0f} s)", flush=True, file=log)

    tokens = data.prepare(progress)
    cache = config.fitness.data.cache_dir
    if args.json:
        print(json.dumps({"config": args.config, "corpus": config.fitness.data.corpus,
                          "tokens": tokens, "cache_dir": cache,
                          "seconds": round(time.perf_counter() - t, 1)}))
        return 0
    print(f"training data ready: {tokens:,} tokens, in the cache under "
          f"{cache or '$PRIMER_SEARCH_CACHE or ~/.cache/primer-search'}")
    return 0


def cmd_top(args) -> int:
    args.store = _store_arg(args.store)
    if args.json:
        with _open_store(args.store) as store:
            if args.ladder:
                from primer_search.search.ladder import ladder_results

                rows = _ladder_rows(ladder_results(store), args.n)
            elif args.retrained:
                from primer_search.stats import summarise_retrains

                rows = [r.as_dict() for r in summarise_retrains(store.retrain_runs())[:args.n]]
            else:
                rows = [_candidate_row(c) for c in store.top(args.n)]
        print(json.dumps(rows, default=_json_float))
    else:
        _print_top(args.store, args.n, args.retrained, args.ladder)
    return 0


def cmd_show(args) -> int:
    import difflib

    from primer_search.search.ladder import ladder_results

    args.store = _store_arg(args.store)

    with _open_store(args.store) as store:
        c = store.get(args.id)
        parent = store.get(c.parent_id) if c.parent_id is not None else None
        rungs = _ladder_rows(ladder_results(store), only=c.id)
    diff = list(difflib.unified_diff(
        parent.dna_text.splitlines() if parent else [], c.dna_text.splitlines(),
        f"#{parent.id}" if parent else "(none)", f"#{c.id}", lineterm="", n=1)) if parent else []
    if args.json:
        print(json.dumps({**_candidate_row(c), "reason": c.result.reason if c.result else "",
                          "metrics": c.result.to_dict() if c.result else None,
                          "dna": c.dna_text, "diff_to_parent": "\n".join(diff),
                          "duplicate_of": c.duplicate_of, "ladder": rungs},
                         default=_json_float))
        return 0
    print(f"candidate #{c.id}  status {c.status}  fitness {c.fitness}  parent "
          f"{'#' + str(c.parent_id) if c.parent_id is not None else '-'}")
    print(f"mutation: {c.mutation}")
    if c.duplicate_of is not None:
        print(f"duplicate of #{c.duplicate_of} (same functional fingerprint; fitness reused)")
    if c.result is not None:
        r = c.result
        if r.reason:
            print(f"reason: {r.reason}")
        print(f"valid ppl {r.perplexity:.4g}  word ppl {r.word_perplexity:.4g}  bits/byte "
              f"{r.bits_per_byte:.4g}  train loss {r.train_loss:.4g}  steps {r.steps}  params "
              f"{r.num_params}  step {1000 * r.step_time_s:.1f} ms  stages {list(r.stage_fitness)}")
        if r.recall_steps:
            print(f"recall accuracy {r.recall_accuracy:.3f}  recall loss {r.recall_loss:.4g}  "
                  f"recall steps {r.recall_steps}  recall {r.recall_s:.1f} s")
        if r.position_loss:
            print(f"context use {r.context_use:+.3f} nats  loss by position (8 spans, first "
                  f"to last): {' '.join(f'{x:.3f}' for x in r.position_loss)}")
    if rungs:
        print("\nladder (place at each rung; `top STORE --ladder` for all):")
        _print_ladder(rungs)
    print()
    print(c.dna_text, end="")
    if diff:
        print("\ndiff to parent:")
        print("\n".join(diff))
    return 0


def cmd_retrain(args) -> int:
    from primer_search.retrain import climb_ladder, retrain

    args.store = _store_arg(args.store)

    def report(cid, seed, result):
        if not args.json:
            print(f"#{cid} seed {seed}: {result.status} fitness {result.fitness:.4g}")

    if args.ladder or args.ladder_from:
        ladder = None
        if args.ladder_from:
            from primer_search.search.config import load_config

            ladder = load_config(args.ladder_from).ladder
        climbed = climb_ladder(
            args.store, ladder, workers=args.workers, address=args.address,
            on_result=lambda label, cid, seed, r: report(cid, f"{seed} at {label}", r))
        rows = _ladder_rows(climbed)
        if args.json:
            print(json.dumps({"winner": climbed[-1]["promoted"][:1], "rungs": rows},
                             default=_json_float))
        else:
            _print_ladder(rows)
            winner = climbed[-1]["promoted"]
            print(f"winner: #{winner[0]}" if winner else "no candidate finished the top rung")
        return 0

    rows = retrain(args.store, args.top, args.seeds, steps=args.steps, seconds=args.seconds,
                   on_result=report, workers=args.workers, address=args.address,
                   timeout_s=args.timeout)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], default=_json_float))
    else:
        _print_retrained(rows[:args.top])
    return 0


def cmd_export(args) -> int:
    from primer_search.export import WidthMismatch, export, export_candidate
    from primer_search.files import new_folder

    args.store = _store_arg(args.store)
    if args.d_model is not None and args.d_model < 1:
        raise UsageError(f"--d-model must be >= 1, got {args.d_model}")
    if args.retrained and not args.store:
        raise UsageError("--retrained exports a stored candidate: give STORE and ID, not --dna")
    if args.store:
        if args.id is None:
            raise UsageError("export STORE needs a candidate ID (see `primer-search top STORE`)")
        try:
            done = export_candidate(args.store, args.id, args.out, retrained=args.retrained,
                                    d_model=args.d_model)
        except WidthMismatch as e:
            raise UsageError(f"--d-model: {e}") from None
        paths, what, notes = done.paths, done.what, done.notes
        with _open_store(args.store) as store:
            num_layers = store.config["fitness"]["model"]["num_layers"]
        shell = f" (LanguageModel(vocab_size=..., num_layers={num_layers}))"
        weights = done.weights
    else:
        dna, what = resolve_dna(args.dna), args.dna
        with new_folder(args.out):
            paths = export(dna, args.out, args.d_model or 128)
        weights, shell = False, ""
        notes = (f"no trained weights are stored for {what}: the module was exported to "
                 "initialise fresh (LanguageModel(...).init), and weights.msgpack was not "
                 "written",)
    if args.json:
        print(json.dumps({"exported": what, "store": args.store, "id": args.id if args.store
                          else None, "written": {k: str(p) for k, p in paths.items()},
                          "weights": weights}))
    else:
        for kind, path in paths.items():
            print(f"wrote {kind}: {path}")
    for note in notes:
        print(note, file=sys.stderr)
    if weights:
        print(f"weights are the trained parameters of {what}{shell}; "
              f"`block.load()` returns the model, its weights and the tokeniser",
              file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_plot(args) -> int:
    from primer_search.files import new_folder
    from primer_search.plots import write_all

    args.store = _store_arg(args.store)
    with new_folder(args.out):
        written = write_all(args.store, args.out)
    if args.json:
        print(json.dumps({"store": str(args.store), "written": [str(p) for p in written]}))
        return 0
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_lineage(args) -> int:
    args.store = _store_arg(args.store)
    with _open_store(args.store) as store:
        chain = store.lineage(args.id)
    if args.json:
        print(json.dumps([_candidate_row(c) for c in chain], default=_json_float))
        return 0
    for depth, c in enumerate(chain):
        fit = f"{c.fitness:.4g}" if c.fitness is not None else "pending"
        print(f"{'  ' * depth}#{c.id}  {fit:>10}  {c.mutation[:90]}")
    return 0


def cmd_dashboard(args) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0 (any free port) to 65535, got {args.port}")
    stores = args.stores or _stores_here()
    try:
        from primer_search.dashboard.server import serve
    except ImportError as e:
        raise OSError(f"the dashboard needs {e.name or 'its packages'}: pip install "
                      "'primer-search[dashboard]'") from None

    def ready(url: str) -> None:
        names = ", ".join(str(s) for s in stores)
        print(f"primer-search dashboard of {names}: {url}  (read-only; Ctrl-C stops it)",
              flush=True)

    try:
        serve(stores, host=args.host, port=args.port, on_ready=ready)
    except KeyboardInterrupt:   # uvicorn shuts down on Ctrl-C, then raises it again
        pass
    return 0


def _stores_here() -> list[Path]:
    """Every search store (``*.sqlite``) in this folder, for ``dashboard`` with no STORE."""
    from primer_search.dashboard.data import check_store
    from primer_search.search.store import StoreError

    found = []
    for path in sorted(Path(".").glob("*.sqlite")):
        try:
            found.append(check_store(path))
        except StoreError:
            continue
    if not found:
        raise StoreError("no search store (*.sqlite) in this folder; give one: "
                         "primer-search dashboard STORE [STORE ...]")
    return found


def _global_flags(p: argparse.ArgumentParser, version: str, log_level_default) -> None:
    p.add_argument("--version", action="version", version=f"primer-search {version}")
    p.add_argument("--log-level", default=log_level_default,
                   choices=("debug", "info", "warning", "error"),
                   help="what primer-search logs to standard error (default: warning); at "
                        "debug, the Ray workers' own output streams to it too; before or "
                        "after the command")


def build_parser() -> argparse.ArgumentParser:
    from primer_search import __version__

    p = argparse.ArgumentParser(prog="primer-search", description=DESCRIPTION,
                                epilog=EXIT_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_flags(p, __version__, "warning")
    # Every command takes the global flags too, after its name (`top STORE --log-level
    # debug`); a flag not given there leaves the value given before the command alone.
    common = argparse.ArgumentParser(add_help=False)
    _global_flags(common, __version__, argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    q = command("search", help="run (or resume) a search")
    q.add_argument("config", nargs="?", help="TOML config, or a shipped one: tiny_cpu, "
                   "gpu_small, primer_lm1b, efficacy_cpu, efficacy_gpu")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set fitness.budget.steps=50")
    q.add_argument("--store", help="SQLite file to create (default: CONFIG-DATE-TIME.sqlite)")
    q.add_argument("--resume", metavar="STORE",
                   help="continue the search in STORE (a path, or `latest`: see top)")
    q.add_argument("--address", help="join a Ray cluster: auto or HOST:PORT (default: local Ray)")
    q.add_argument("--quiet", action="store_true", help="no live progress display")
    q.add_argument("--json", action="store_true", help="print the summary as JSON")
    q.set_defaults(fn=cmd_search)

    pr = command("prepare", help="tokenise a config's corpus into the cache ahead of "
                        "a search (LM1B: every training shard)")
    pr.add_argument("config", help="TOML config, or a shipped one (see search)")
    pr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field, e.g. --set fitness.data.path=/data/lm1b")
    pr.add_argument("--json", action="store_true",
                    help="print what was prepared as JSON (progress goes to stderr)")
    pr.set_defaults(fn=cmd_prepare)

    for name, fn, text in (("top", cmd_top, "the best candidates of a store"),):
        c = command(name, help=text)
        c.add_argument("store", help=STORE_HELP)
        c.add_argument("-n", type=int, default=10, help="how many candidates (default 10)")
        c.add_argument("--retrained", action="store_true", help="rank by retraining results")
        c.add_argument("--ladder", action="store_true",
                       help="the best N at each rung of the final-selection ladder")
        c.add_argument("--json", action="store_true", help="print the rows as JSON")
        c.set_defaults(fn=fn)
    for name, fn, text in (("show", cmd_show, "one candidate: program, metrics, diff to parent"),
                           ("lineage", cmd_lineage, "a candidate's ancestors up to its seed")):
        c = command(name, help=text)
        c.add_argument("store", help=STORE_HELP)
        c.add_argument("id", type=int, help="the candidate's id (see top)")
        c.add_argument("--json", action="store_true", help="print it as JSON")
        c.set_defaults(fn=fn)

    d = command("dashboard", help="a live web page of one or more stores, read-only")
    d.add_argument("stores", nargs="*", metavar="STORE",
                   help="search stores to show side by side (default: every *.sqlite store "
                        "in this folder)")
    d.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    d.add_argument("--port", type=int, default=8765,
                   help="port to listen on (default 8765; 0: any free port, printed)")
    d.set_defaults(fn=cmd_dashboard)

    r = command("retrain", help="retrain the top K longer with several seeds")
    r.add_argument("store", help=STORE_HELP + "; runs are recorded in it")
    r.add_argument("--top", type=int, default=10, help="how many candidates (default 10)")
    r.add_argument("--seeds", type=int, default=3, help="training seeds each (default 3)")
    r.add_argument("--steps", type=int, default=None, help="step budget (default: the search's)")
    r.add_argument("--seconds", type=float, default=None, help="wall-clock budget")
    r.add_argument("--workers", type=int, default=0,
                   help="train on this many Ray workers with the search's resources per "
                        "worker (default 0: one after another in this process)")
    r.add_argument("--address", default=None, help="Ray cluster address for --workers")
    r.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="end a run that takes longer (recorded as timeout; the others go "
                        "on); default: the search's candidate_timeout_s, scaled by how much "
                        "longer the retraining budget is")
    r.add_argument("--ladder", action="store_true",
                   help="final selection up the search config's ladder ([[ladder.rungs]]): "
                        "each rung trains the best of the one below under larger settings; "
                        "--top, --seeds, --steps and --seconds do not apply")
    r.add_argument("--ladder-from", default=None, metavar="CONFIG",
                   help="climb the ladder of this config (a name or a TOML path) instead")
    r.add_argument("--json", action="store_true", help="print the summary rows as JSON")
    r.set_defaults(fn=cmd_retrain)

    pl = command("plot", help="write a search's figures as PNG files")
    pl.add_argument("store", help=STORE_HELP)
    pl.add_argument("--out", required=True, help="output folder")
    pl.add_argument("--json", action="store_true", help="print the files written as JSON")
    pl.set_defaults(fn=cmd_plot)

    e = command("export", help="write a block as a standalone Flax module")
    e.add_argument("store", nargs="?", help="a search store (with ID) or `latest` (see top); or use --dna")
    e.add_argument("id", nargs="?", type=int, help="the candidate's id, with STORE")
    e.add_argument("--dna", default="seeds:primer_ez", help="seeds:NAME or a DNA file")
    e.add_argument("--d-model", type=int, default=None,
                   help="model width (default: the search's, or 128 with --dna)")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--retrained", action="store_true",
                   help="use the weights of the candidate's best retraining run (see retrain)")
    e.add_argument("--json", action="store_true", help="print the files written as JSON")
    e.set_defaults(fn=cmd_export)

    t = command("train", help="train one DNA and print its fitness")
    t.add_argument("--dna", default="seeds:transformer",
                   help="seeds:NAME or a DNA file (default: seeds:transformer)")
    t.add_argument("--corpus", default="ptb", help="ptb (embedded), lm1b or text")
    t.add_argument("--path", default=None, help="corpus path, for lm1b and text")
    t.add_argument("--tokenizer", default=None,
                   help="word, byte or subword (default: subword for lm1b, word otherwise)")
    t.add_argument("--steps", type=int, default=300, help="step budget (default 300)")
    t.add_argument("--seconds", type=float, default=None, help="wall-clock training budget")
    t.add_argument("--stages", type=int, default=1, help="evaluate after each of N stages")
    t.add_argument("--d-model", type=int, default=128)
    t.add_argument("--layers", type=int, default=2)
    t.add_argument("--seq-len", type=int, default=64)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: the trainer's, see OptimConfig)")
    t.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: the trainer's)")
    t.add_argument("--schedule", default=None,
                   help="learning-rate schedule after warm-up: constant, linear, cosine, wsd or "
                        "rsqrt (default: the trainer's)")
    t.add_argument("--optimizer", default=None,
                   help="adamw or adafactor (the Primer paper's; default: adamw)")
    t.add_argument("--eval-tokens", type=int, default=None,
                   help="validation tokens to score (default 16384; more is slower and less "
                        "noisy; PTB's validation split has 73,760)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--recall-pairs", type=int, default=None, metavar="N",
                   help="also train and score the recall task (MQAR) with N key-value pairs "
                        "of 64 keys and values, as the shipped CPU configs do (4)")
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.set_defaults(fn=cmd_train)

    s = command("show-dna", help="print a DNA as readable code")
    s.add_argument("dna", help="seeds:NAME or a DNA file")
    s.add_argument("--prune", action="store_true", help="print the canonical (pruned) form")
    s.add_argument("--json", action="store_true", help="print the program and its hash as JSON")
    s.set_defaults(fn=cmd_show_dna)

    for name, fn, text in (("seeds", cmd_seeds, "list the seed blocks"),
                           ("ops", cmd_ops, "list the primitive vocabulary")):
        c = command(name, help=text)
        c.add_argument("--json", action="store_true", help="print the list as JSON")
        c.set_defaults(fn=fn)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import logging

    from primer_search.fitness.data import DataError
    from primer_search.program.dna import DNAError
    from primer_search.search.errors import ConfigError, ResumeError
    from primer_search.search.pool import WorkerStartError
    from primer_search.search.store import StoreError

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("primer_search").setLevel(args.log_level.upper())
    try:
        return args.fn(args)
    except ResumeError as e:
        return _error(e, EXIT_FAILURE)
    except (ConfigError, UsageError, DNAError) as e:
        return _error(e, EXIT_USAGE)
    except (DataError, StoreError, KeyError, ValueError, OSError, WorkerStartError) as e:
        # OSError: FileExistsError, ConnectionError (an unreachable cluster), a full disk.
        return _error(e, EXIT_FAILURE)


def _error(e: BaseException, status: int) -> int:
    """One line on standard error, no traceback."""
    message = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"primer-search: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
