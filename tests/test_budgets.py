"""Verdicts the search acts on: honest time budgets, failed training signals, hurdle
stages of equal expected compute, and a consistent ranking of hurdle-stopped members."""

import dataclasses
import math

import pytest

from primer_search.fitness.config import BudgetConfig, FitnessConfig, ModelConfig
from primer_search.fitness.data import DataConfig
from primer_search.fitness.evaluate import Evaluator
from primer_search.fitness.hurdles import HurdleTracker, expected_cost, rank_key, stage_ends
from primer_search.fitness.results import Status
from primer_search.program import seeds
from primer_search.program.dna import DNA, Instruction
from primer_search.search.evolution import EvolutionConfig, Member, RegularizedEvolution

I = Instruction
TINY = FitnessConfig(data=DataConfig(seq_len=32, batch_size=8, eval_tokens=1024),
                     model=ModelConfig(d_model=32, num_layers=1),
                     budget=BudgetConfig(steps=20))

# LOG of a parameter that starts at exactly 0: the loss is finite, the gradient 1e30.
ZERO_LOG = DNA.of([I("C_MUL", 0, const=0.0), I("SHIFT", 2), I("LOG", 3), I("ADD", 0, 4)])


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator(TINY)


# ---- a budget in seconds counts completed steps ------------------------------------------

# Steps of about 0.1 s on the CPU: slow enough that a host loop which reads the clock
# without waiting for the device queues many steps past the budget (the first version
# ran 10 steps, 19.9 s, against a 2 s budget with a wider model of this kind).
SLOW = FitnessConfig(data=DataConfig(seq_len=128, batch_size=16, eval_tokens=2048),
                     model=ModelConfig(d_model=128, num_layers=2),
                     budget=BudgetConfig(steps=None, seconds=0.5, check_every=10))


def test_seconds_budget_overshoots_by_at_most_one_step():
    result, _ = Evaluator(SLOW).evaluate(seeds.get("transformer"))
    assert result.status == Status.OK, result.reason
    assert 1 <= result.steps < SLOW.budget.check_every, result   # not a batch of 10
    # The budget is passed by at most about one step.
    assert result.train_s <= SLOW.budget.seconds + 1.5 * result.step_time_s + 0.05, result


def test_seconds_budget_stages_follow_the_equal_compute_split():
    cfg = dataclasses.replace(SLOW, budget=dataclasses.replace(SLOW.budget, seconds=1.5,
                                                               stages=2))
    result, _ = Evaluator(cfg).evaluate(seeds.get("transformer"), hurdles=[0.0])
    assert result.status == Status.HURDLE
    # Stage 1 of 2 at pass rate 0.5 is a third of the budget: 0.5 s.
    assert result.train_s <= 0.5 + 1.5 * result.step_time_s + 0.05, result


# ---- a training signal that stops is a failure ----------------------------------------

def test_non_finite_gradient_norm_is_a_failure_with_its_own_reason(evaluator):
    result, _ = evaluator.evaluate(ZERO_LOG)
    assert result.status == Status.UNTRAINED and result.failed
    assert "gradient norm was NaN or Inf" in result.reason
    assert math.isfinite(result.train_loss)      # the loss alone looked ordinary
    assert result.fitness == math.inf
    good, _ = evaluator.evaluate(seeds.get("transformer"))
    assert good.status == Status.OK


def test_untrained_results_may_be_reused_but_transient_failures_not():
    assert Status.UNTRAINED.is_failed() and Status.UNTRAINED.is_reusable()
    assert not Status.UNTRAINED.is_transient()
    assert set(Status.transient()) == {Status.OOM, Status.TIMEOUT, Status.ERROR}
    assert not any(s.is_reusable() for s in Status.transient())


# ---- hurdle stages ---------------------------------------------------------------------

def test_four_hurdles_at_half_pass_rate_are_the_papers_split():
    ends = stage_ends(None, 5, 0.5)
    lengths = [b - a for a, b in zip([0.0] + ends[:-1], ends)]
    assert [round(31 * x, 9) for x in lengths] == [1, 2, 4, 8, 16]
    assert expected_cost(5, 0.5) == pytest.approx(5 / 31)       # a 6.2x saving
    assert expected_cost(4, 1.0) == 1.0
    assert stage_ends(310, 5, 0.5) == [10, 30, 70, 150, 310]


def test_every_stage_trains_at_least_one_step():
    assert stage_ends(5, 5, 0.5) == [1, 2, 3, 4, 5]
    ends = stage_ends(12, 5, 0.5)
    assert ends[-1] == 12 and all(b > a for a, b in zip([0] + ends, ends))
    assert stage_ends(100, 4, 1.0) == [25, 50, 75, 100]         # pass rate 1: equal stages
    with pytest.raises(ValueError, match="cannot make 5 stages"):
        stage_ends(4, 5, 0.5)


def test_evaluator_stops_at_the_equal_compute_boundary(evaluator):
    cfg = dataclasses.replace(TINY, budget=BudgetConfig(steps=31, stages=5))
    result, _ = Evaluator(cfg, dataset=evaluator.dataset).evaluate(
        seeds.get("transformer"), hurdles=[None, 0.0])
    assert result.status == Status.HURDLE and result.steps == 3   # stages of 1 and 2 steps
    assert len(result.stage_fitness) == 2


def test_hurdles_use_a_window_of_recent_candidates():
    tracker = HurdleTracker(stages=2, quantile=0.5, min_history=2, window=3)
    for f in (100, 90, 80, 10, 12, 14):
        tracker.record([f, f / 2])
    assert tracker.thresholds() == [12.0]    # the median of the last three, not of all six


def test_a_member_that_passed_a_hurdle_outranks_one_stopped_at_it():
    finished = (480.0, 2)    # full budget: fitness 480 after 2 stages
    stopped = (450.0, 1)     # stopped after stage 1 with a (lower, less trained) 450
    assert rank_key(*finished) < rank_key(*stopped)
    assert rank_key(math.inf, 2) > rank_key(900.0, 1)     # failures rank last
    assert rank_key(math.nan, 0) == rank_key(math.inf, 0)
    dna = seeds.get("transformer")
    evo = RegularizedEvolution(EvolutionConfig(population_size=2, tournament_size=2),
                               [("t", dna)], seed=0)
    evo.recover([Member(1, dna, 450.0, stages=1), Member(2, dna, 480.0, stages=2)],
                num_proposed=2)
    assert evo.best().id == 2
    assert evo.propose().parent_id == 2
