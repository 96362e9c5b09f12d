"""The recall task: MQAR rows are right, it separates attention from local mixing, it
shares the language-model task's compiled steps, and its results reach the store and CLI."""

import dataclasses
import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest

from primer_search import cli
from primer_search.fitness.config import BudgetConfig, FitnessConfig, ModelConfig, RecallConfig
from primer_search.fitness.data import DataConfig, DataError
from primer_search.fitness.evaluate import Evaluator, context_scores, recall_stage_ends
from primer_search.fitness.recall import RecallData, combine, mqar_batch
from primer_search.fitness.results import Status
from primer_search.program import seeds
from primer_search.program.describe import keeps_attention
from primer_search.program.dna import DNA, Instruction
from primer_search.program.validate import load_dna
from primer_search.search.store import Store

I = Instruction
LOCAL_51 = Path(__file__).resolve().parents[1] / "examples" / "local-mixing-51.dna"
# Byte-level so the output layer is small; 16 keys and values (chance 1/16).
SMALL = FitnessConfig(
    data=DataConfig(tokenizer="byte", seq_len=32, batch_size=16, eval_tokens=1024),
    model=ModelConfig(d_model=32, num_layers=1), budget=BudgetConfig(steps=100),
    recall=RecallConfig(enabled=True, pairs=4, num_keys=16, num_values=16, eval_sequences=128))


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator(SMALL)


@pytest.mark.parametrize("placement", ["compact", "spread"])
def test_every_query_asks_a_key_of_its_row_and_is_answered_by_that_keys_value(placement):
    cfg = RecallConfig(enabled=True, pairs=6, queries=4, placement=placement, gap_exponent=1.0)
    tokens, weights = mqar_batch(np.random.default_rng(3), cfg, 32, 65)
    assert tokens.shape == (32, 65) and weights.shape == (32, 64)
    assert tokens.dtype == np.int32 and weights.dtype == np.float32
    for row, w in zip(tokens, weights):
        keys, values = row[0:12:2], row[1:12:2]
        assert len(set(keys)) == 6 and all(1 <= k <= 64 for k in keys)
        assert all(65 <= v <= 128 for v in values)
        answer = dict(zip(keys, values))
        asked = np.flatnonzero(w)
        assert len(asked) == 4 and set(np.unique(w)) == {0.0, 1.0}
        assert all(t >= 12 for t in asked)              # queries come after the pairs
        assert len({row[t] for t in asked}) == 4        # four different keys
        for t in asked:                                  # target t is the token at t + 1
            assert row[t + 1] == answer[row[t]]
        rest = np.ones(65, bool)
        rest[:12] = False
        rest[asked] = rest[asked + 1] = False
        assert (row[rest] == 0).all()                   # everything else is filler
    if placement == "compact":
        assert (np.flatnonzero(weights[0]) == [12, 14, 16, 18]).all()


def test_spread_queries_follow_the_power_law():
    near = RecallConfig(enabled=True, pairs=4, placement="spread", gap_exponent=2.0)
    flat = RecallConfig(enabled=True, pairs=4, placement="spread", gap_exponent=0.0)
    gaps = {}
    for name, cfg in (("near", near), ("flat", flat)):
        _, w = mqar_batch(np.random.default_rng(0), cfg, 2000, 129)
        gaps[name] = np.flatnonzero(w.ravel()) % 128 - 8
    assert gaps["near"].mean() < 0.5 * gaps["flat"].mean()


def test_batches_are_seeded_and_the_evaluation_set_is_the_same_for_every_seed():
    data = RecallData(SMALL.recall, 16, 33)
    a, b = data.train_batches(0, 3), data.train_batches(0, 3)
    assert all((x[0] == y[0]).all() for x, y in zip(a, b))
    assert not (data.train_batches(1, 1)[0][0] == a[0][0]).all()
    again = RecallData(SMALL.recall, 16, 33)
    assert len(data.eval_batches) == 8   # 128 sequences in batches of 16
    assert all((x[0] == y[0]).all() for x, y in zip(data.eval_batches, again.eval_batches))


def test_bad_recall_settings_are_refused_with_the_value_named():
    with pytest.raises(ValueError, match="recall.placement must be one of compact, spread"):
        RecallConfig(placement="middle")
    with pytest.raises(ValueError, match=r"recall.pairs \(9\) must be at most recall.num_keys"):
        RecallConfig(pairs=9, num_keys=8)
    with pytest.raises(ValueError, match="recall.combine must be one of weighted, report"):
        RecallConfig(combine="sum")
    with pytest.raises(ValueError, match="need sequences of 32 tokens, but fitness.data.seq_len"):
        FitnessConfig(data=DataConfig(seq_len=16), recall=RecallConfig(enabled=True, pairs=8))
    with pytest.raises(ValueError, match="recall.steps must be set when the budget is in seconds"):
        FitnessConfig(budget=BudgetConfig(steps=None, seconds=5.0),
                      recall=RecallConfig(enabled=True))
    with pytest.raises(ValueError, match=r"recall.seq_len must be None or an integer of at "
                                         r"least 31 \(rows of 32 tokens: 8 pairs and 8 "
                                         r"queries\), got 30"):
        RecallConfig(pairs=8, seq_len=30)
    # Rows of their own length lift the language model's bound.
    FitnessConfig(data=DataConfig(seq_len=16), recall=RecallConfig(enabled=True, pairs=8,
                                                                   seq_len=31))
    too_many = FitnessConfig(data=SMALL.data, model=SMALL.model, budget=SMALL.budget,
                             recall=RecallConfig(enabled=True, num_keys=200, num_values=100))
    with pytest.raises(DataError, match="need 301 token ids.*has 257"):
        Evaluator(too_many)


def test_combine_is_perplexity_times_exp_of_the_weighted_recall_loss():
    on = RecallConfig(enabled=True, weight=0.5)
    assert combine(on, 8.0, 2.0) == pytest.approx(8.0 * math.e)
    assert combine(RecallConfig(enabled=True, combine="report"), 8.0, 2.0) == 8.0
    assert combine(on, 8.0, None) == 8.0
    assert combine(on, 8.0, 1e6) == math.inf
    hinged = RecallConfig(enabled=True, num_values=64, weight=0.2, hinge_weight=2.0,
                          hinge_fraction=0.9)
    hinge = 0.9 * math.log(64)
    assert combine(hinged, 8.0, 2.9) == pytest.approx(8.0 * math.exp(0.2 * 2.9))
    assert combine(hinged, 8.0, 4.2) == pytest.approx(
        8.0 * math.exp(0.2 * 4.2 + 2.0 * (4.2 - hinge)))
    with pytest.raises(ValueError, match="recall.hinge_fraction must be in"):
        RecallConfig(hinge_fraction=0.0)


def test_attention_with_a_depthwise_convolution_recalls_and_local_mixing_does_not(evaluator):
    ez, _ = evaluator.evaluate(seeds.get("primer_ez"))
    local, _ = evaluator.evaluate(load_dna(LOCAL_51))
    assert ez.status == local.status == Status.OK, (ez.reason, local.reason)
    assert ez.recall_accuracy > 0.8, ez.recall_accuracy
    assert local.recall_accuracy < 2.5 / 16, local.recall_accuracy   # chance is 1/16
    assert ez.recall_steps == local.recall_steps == 100 and ez.recall_s > 0
    for r in (ez, local):   # every stage's fitness combines the two tasks
        assert r.fitness == pytest.approx(combine(SMALL.recall, r.perplexity, r.recall_loss))
        assert r.stage_perplexity[-1] == r.perplexity
    assert ez.fitness < local.fitness
    assert keeps_attention(seeds.get("primer_ez")) and not keeps_attention(load_dna(LOCAL_51))


def _count_compiles(monkeypatch) -> list:
    calls = []
    original = jax.stages.Lowered.compile

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(jax.stages.Lowered, "compile", counting)
    return calls


def test_the_recall_task_shares_the_compiled_steps_unless_its_length_differs(monkeypatch):
    ev = Evaluator(SMALL)
    ev.evaluate(seeds.get("transformer"), budget=BudgetConfig(steps=4))
    calls = _count_compiles(monkeypatch)   # counted after a first run compiled the helpers
    result, _ = ev.evaluate(seeds.get("transformer"), budget=BudgetConfig(steps=100))
    assert result.status == Status.OK and len(calls) == 2   # one train step, one eval step
    calls.clear()
    result, _ = ev.evaluate(seeds.get("transformer"), budget=BudgetConfig(steps=60))
    assert result.status == Status.OK and len(calls) == 3   # a schedule of its own
    assert result.recall_steps == 100 and result.steps == 60   # the config's recall steps


def test_recall_rows_of_their_own_length_score_as_a_model_of_that_context_does(monkeypatch):
    """recall.seq_len = 16 beside 32-token language-model rows trains and scores the
    recall task exactly as an evaluator whose rows are 16 tokens long: the same batches,
    the same initial parameters, the same schedule; it costs a training and an
    evaluation step of its own."""
    Evaluator(SMALL).evaluate(seeds.get("transformer"), budget=BudgetConfig(steps=4))
    calls = _count_compiles(monkeypatch)   # counted after a first run compiled the helpers
    own = dataclasses.replace(SMALL, recall=dataclasses.replace(SMALL.recall, seq_len=16))
    short = dataclasses.replace(SMALL, data=dataclasses.replace(SMALL.data, seq_len=16))
    budget = BudgetConfig(steps=30)
    a, _ = Evaluator(own).evaluate(seeds.get("transformer"), budget=budget)
    assert a.status == Status.OK and len(calls) == 4   # the LM's two steps, the recall's two
    b, _ = Evaluator(short).evaluate(seeds.get("transformer"), budget=budget)
    assert (a.recall_loss, a.recall_accuracy, a.recall_steps) == (
        b.recall_loss, b.recall_accuracy, b.recall_steps)
    full, _ = Evaluator(SMALL).evaluate(seeds.get("transformer"), budget=budget)
    assert a.perplexity == full.perplexity            # the language model is untouched
    assert a.recall_loss != full.recall_loss


def test_a_recall_rate_of_its_own_trains_the_task_as_that_rate_for_both_tasks_does(
        monkeypatch):
    """recall.learning_rate trains and scores the recall task exactly as an evaluator
    whose optimiser has that rate for both tasks, leaves the language model as it is, and
    costs one training step of its own."""
    rate = 0.3 * SMALL.optim.peak_rate(SMALL.model.d_model)
    own = dataclasses.replace(SMALL, recall=dataclasses.replace(SMALL.recall,
                                                                 learning_rate=rate))
    both = dataclasses.replace(SMALL, optim=dataclasses.replace(SMALL.optim, learning_rate=rate))
    budget = SMALL.budget   # the recall task's own length: only the rate tells them apart
    full, _ = Evaluator(SMALL).evaluate(seeds.get("transformer"), budget=budget)
    calls = _count_compiles(monkeypatch)   # after a first run has compiled the helpers
    b, _ = Evaluator(both).evaluate(seeds.get("transformer"), budget=budget)
    assert b.status == Status.OK and len(calls) == 2   # one rate: both tasks share the steps
    calls.clear()
    a, _ = Evaluator(own).evaluate(seeds.get("transformer"), budget=budget)
    assert a.status == Status.OK and len(calls) == 3   # the LM's two steps, the recall's one
    assert (a.recall_loss, a.recall_accuracy) == (b.recall_loss, b.recall_accuracy)
    assert a.recall_loss != full.recall_loss
    assert a.perplexity == full.perplexity != b.perplexity
    with pytest.raises(ValueError, match="recall.learning_rate must be None or a number > 0, "
                                         "got -0.001"):
        RecallConfig(learning_rate=-0.001)


def test_a_nan_on_the_recall_task_fails_the_candidate_naming_the_task(evaluator):
    nan_program = DNA.of([I("C_MUL", 0, const=1000.0), I("EXP", 2), I("SQUARE", 3),
                          I("DIFFERENCE", 4, 4), I("ADD", 0, 5)])
    bad, _ = evaluator.evaluate(nan_program)
    assert bad.status == Status.NAN and bad.fitness == math.inf
    assert bad.reason.startswith("recall task: training loss is nan")


def test_context_use_is_early_loss_minus_late_loss():
    flat = context_scores(np.full(64, 2.0))
    assert flat["context_use"] == 0.0 and flat["position_loss"] == (2.0,) * 8
    falling = context_scores(np.linspace(4.0, 1.0, 64))
    early, late = np.linspace(4.0, 1.0, 64)[8:16].mean(), np.linspace(4.0, 1.0, 64)[48:].mean()
    assert falling["context_use"] == pytest.approx(early - late)
    assert list(falling["position_loss"]) == sorted(falling["position_loss"], reverse=True)
    assert math.isnan(context_scores(np.ones(4))["context_use"])


def test_every_task_reaches_the_store_top_show_and_json(evaluator, tmp_path, capsys):
    result, _ = evaluator.evaluate(seeds.get("primer_ez"))
    assert len(result.position_loss) == 8 and math.isfinite(result.context_use)
    path = tmp_path / "s.sqlite"
    with Store(path, {"fitness": {}}) as store:
        cid = store.add(dna=seeds.get("primer_ez"), parent_id=None, mutation="seed", dna_hash="h")
        store.finish(cid, result)
    with Store(path, readonly=True) as store:
        assert store.get(cid).result == result          # every field round-trips
    assert cli.main(["top", str(path)]) == 0
    out = capsys.readouterr().out
    assert "recall" in out.splitlines()[0] and "context" in out.splitlines()[0]
    assert f"{result.recall_accuracy:.3f}" in out
    assert cli.main(["top", str(path), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["recall_accuracy"] == pytest.approx(result.recall_accuracy)
    assert row["context_use"] == pytest.approx(result.context_use)
    assert row["perplexity"] == pytest.approx(result.perplexity)
    assert cli.main(["show", str(path), str(cid)]) == 0
    out = capsys.readouterr().out
    assert f"recall accuracy {result.recall_accuracy:.3f}" in out and "context use" in out


def test_hurdles_see_recall_and_a_seconds_budget_keeps_its_recall_steps(evaluator):
    ez, _ = evaluator.evaluate(seeds.get("primer_ez"), budget=BudgetConfig(steps=100, stages=2))
    # A hurdle between the two: Primer-EZ passes, the block that cannot recall stops.
    hurdle = 3 * ez.stage_fitness[0]
    local, _ = evaluator.evaluate(load_dna(LOCAL_51), [hurdle],
                                  budget=BudgetConfig(steps=100, stages=2))
    assert local.status == Status.HURDLE and local.stages_completed == 1, local.reason
    assert local.stage_perplexity[0] < hurdle < local.stage_fitness[0]
    timed = FitnessConfig(data=SMALL.data, model=SMALL.model,
                          budget=BudgetConfig(steps=None, seconds=1.0),
                          recall=RecallConfig(enabled=True, pairs=4, num_keys=16, num_values=16,
                                              eval_sequences=32, steps=20))
    result, _ = Evaluator(timed).evaluate(seeds.get("primer_ez"))
    assert result.status == Status.OK and result.recall_steps == 20 and result.steps >= 1


def test_staged_recall_pays_its_share_at_a_hurdle_and_ends_where_recall_first_does():
    """recall.timing = "staged" trains the recall task in the language model's hurdle
    stages (1 and 2 parts of 3 at a pass rate of 0.5): a candidate stopped at the hurdle
    has trained 33 of its 100 recall steps and was judged on that recall loss; one that
    passes ends with exactly the recall loss, accuracy and fitness of recall first."""
    staged = dataclasses.replace(SMALL, recall=dataclasses.replace(SMALL.recall,
                                                                   timing="staged"))
    budget = BudgetConfig(steps=100, stages=2)
    first, _ = Evaluator(SMALL).evaluate(seeds.get("transformer"), budget=budget)
    ev = Evaluator(staged)
    passed, _ = ev.evaluate(seeds.get("transformer"), budget=budget)
    assert passed.status == Status.OK and passed.recall_steps == 100
    assert (passed.recall_loss, passed.recall_accuracy, passed.fitness) == (
        first.recall_loss, first.recall_accuracy, first.fitness)
    assert passed.stage_perplexity == first.stage_perplexity
    # After a third of its steps the task has learnt less: the first stage's fitness is
    # worse than under recall first, where the task was already done.
    assert passed.stage_fitness[0] > first.stage_fitness[0]
    stopped, _ = ev.evaluate(seeds.get("transformer"), [0.0], budget=budget)
    assert stopped.status == Status.HURDLE and stopped.recall_steps == 33
    assert stopped.fitness == passed.stage_fitness[0]
    assert stopped.recall_loss > passed.recall_loss
    assert stopped.recall_s < 0.6 * passed.recall_s


def test_staged_recall_trains_first_where_no_hurdle_can_stop_a_candidate():
    staged = dataclasses.replace(SMALL.recall, timing="staged")
    assert recall_stage_ends(staged, 100, BudgetConfig(steps=200, stages=3)) == [14, 43, 100]
    assert recall_stage_ends(staged, 100, BudgetConfig(steps=200, stages=1)) == [100]
    # Equal stages of a retrain or a ladder rung: nothing stops a candidate there.
    assert recall_stage_ends(staged, 100, BudgetConfig(steps=200, stages=4, pass_rate=1.0)) \
        == [100] * 4
    assert recall_stage_ends(SMALL.recall, 100, BudgetConfig(steps=200, stages=3)) == [100] * 3
    with pytest.raises(ValueError, match="recall.timing must be one of first, staged; got 'late'"):
        RecallConfig(timing="late")
    with pytest.raises(ValueError, match=r"recall.steps \(2\) must be at least budget.stages "
                                         r"\(3\) under recall.timing = 'staged'"):
        FitnessConfig(budget=BudgetConfig(steps=90, stages=3),
                      recall=RecallConfig(enabled=True, timing="staged", steps=2))
