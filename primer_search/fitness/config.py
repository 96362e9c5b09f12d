"""How a candidate is scored: the data, the model around the block, the optimiser, the
budget and the seed, as frozen dataclasses that import no JAX.

The search configuration (:mod:`primer_search.search.config`) composes :class:`FitnessConfig`,
and Ray sends it to every worker; the trainer (:mod:`primer_search.fitness.train`) and the
evaluator (:mod:`primer_search.fitness.evaluate`) read it. A file of
``search_configs/`` sets these fields in its ``[fitness.*]`` tables.
"""

from __future__ import annotations

import dataclasses

from primer_search.fitness.data import DataConfig

__all__ = ["COMBINE_RULES", "LR_TIMES_WIDTH", "OPTIMIZERS", "QUERY_PLACEMENTS", "RECALL_TIMINGS",
           "SCHEDULES", "BudgetConfig", "FitnessConfig", "ModelConfig", "OptimConfig", "RecallConfig"]

# "adamw": Adam with decoupled weight decay (the default, chosen by the trainer sweep).
# "adafactor": the Primer paper's optimiser (Shazeer & Stern 2018: factored second
# moments, update clipping at 1, no momentum), with an absolute learning rate.
OPTIMIZERS = ("adamw", "adafactor")

# After warm-up: hold the peak ("constant"); fall linearly or along a half cosine to
# `end_fraction` of the peak at the last step ("linear", "cosine"); hold the peak, then
# fall linearly to `end_fraction` over the last `cooldown_fraction` of the steps ("wsd",
# warm-up / stable / decay); or decay as 1/sqrt(step) ("rsqrt", the Transformer's and the
# Primer paper's schedule).
SCHEDULES = ("constant", "linear", "cosine", "wsd", "rsqrt")


# The default peak learning rate times the model width: Adam's best rate for the hidden
# matrices falls roughly as 1 / width. Measured by benchmarks/trainer_sweep.py: the best
# rates were near 1.4e-2 at width 64 (100 steps) and 7e-3 at width 128 (300 steps).
LR_TIMES_WIDTH = 0.9


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule (AdamW or Adafactor, linear warm-up, then a
    decay).

    The defaults were chosen by the sweep in ``benchmarks/trainer_sweep.py`` (docs,
    benchmarks/trainer.md)."""

    # One of OPTIMIZERS.
    optimizer: str = "adamw"
    # Peak learning rate, reached at the end of warm-up. None: LR_TIMES_WIDTH / d_model.
    learning_rate: float | None = None
    # Steps of linear warm-up from 0 ...
    warmup_steps: int = 100
    # ... or this share of a known step budget, if that is shorter.
    warmup_fraction: float = 0.3
    # What the rate does after warm-up: one of SCHEDULES. "linear", "cosine" and "wsd"
    # need to know the last step; under a budget in seconds they hold the peak instead.
    schedule: str = "wsd"
    # Where "linear", "cosine" and "wsd" end, as a fraction of the peak rate.
    end_fraction: float = 0.0
    # The share of the steps over which "wsd" decays (at the end of the run).
    cooldown_fraction: float = 0.1
    # Decoupled weight decay (Adafactor: decay rate times the learning rate; 0 turns it off).
    weight_decay: float = 0.01
    # Which parameters it applies to: "matrices" (projection and convolution kernels and
    # the embedding; see decay_mask) or "all".
    decay: str = "matrices"
    # Clip gradients to this global norm (0 turns clipping off).
    clip_norm: float = 1.0
    # AdamW's moment decay rates (Adafactor has no first moment and its own second-moment
    # schedule, 1 - step**-0.8).
    b1: float = 0.9
    b2: float = 0.98

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optim.optimizer must be one of {', '.join(OPTIMIZERS)}; got "
                             f"{self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule must be one of {', '.join(SCHEDULES)}; got "
                             f"{self.schedule!r}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError(f"optim.learning_rate must be > 0 or None, got {self.learning_rate}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 < self.warmup_fraction <= 1.0:
            raise ValueError(f"optim.warmup_fraction must be in (0, 1], got "
                             f"{self.warmup_fraction}")
        if self.decay not in ("matrices", "all"):
            raise ValueError(f"optim.decay must be 'matrices' or 'all', got {self.decay!r}")
        if not 0.0 < self.cooldown_fraction <= 1.0:
            raise ValueError(f"optim.cooldown_fraction must be in (0, 1], got "
                             f"{self.cooldown_fraction}")
        if not 0.0 <= self.end_fraction <= 1.0:
            raise ValueError(f"optim.end_fraction must be in [0, 1], got {self.end_fraction}")

    def peak_rate(self, d_model: int | None) -> float:
        """The peak learning rate for a model of width ``d_model``."""
        if self.learning_rate is not None:
            return self.learning_rate
        if not d_model:
            raise ValueError("optim.learning_rate is None (scaled with the width), so the "
                             "optimiser needs the model width d_model")
        return LR_TIMES_WIDTH / d_model

    def warmup(self, total_steps: int | None) -> int:
        """Warm-up steps for a run of ``total_steps`` (None: unknown)."""
        if total_steps is None:
            return self.warmup_steps
        return min(self.warmup_steps, round(self.warmup_fraction * total_steps))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The language model around the block (the vocabulary comes from the data)."""

    # Model width; the block maps [batch, seq, d_model] to the same shape.
    d_model: int = 128
    # Number of stacked copies of the block.
    num_layers: int = 2


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
    """How long one candidate trains."""

    # Training steps in total (over all stages). None: limited by `seconds` alone.
    steps: int | None = 300
    # Seconds of training in total, compile and evaluation excluded. None: steps alone.
    seconds: float | None = None
    # Number of stages the budget is split into; a hurdle follows every stage but the
    # last (1: no hurdles; 5: the Primer paper's four hurdles).
    stages: int = 1
    # The share of candidates each hurdle lets through (the hurdle is this quantile of
    # recent candidates' fitness at that stage). Stage lengths follow from it: stage k
    # trains in proportion to pass_rate**-k, so every stage costs the same expected
    # compute (1, 2, 4, 8, 16 of 31 parts for five stages at 0.5). 1.0: equal stages.
    pass_rate: float = 0.5
    # Hard limit on one evaluation, compile and evaluation included. None: no limit.
    timeout_s: float | None = None
    # Check the training loss for NaN/Inf every this many steps.
    check_every: int = 10

    def __post_init__(self):
        if self.steps is None and self.seconds is None:
            raise ValueError("budget: set steps, seconds or both (both are None)")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"budget.steps must be >= 1 or None, got {self.steps}")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError(f"budget.seconds must be > 0 or None, got {self.seconds}")
        if self.stages < 1:
            raise ValueError(f"budget.stages must be >= 1, got {self.stages}")
        if not 0.0 < self.pass_rate <= 1.0:
            raise ValueError(f"budget.pass_rate must be in (0, 1], got {self.pass_rate}")
        if self.steps is not None and self.steps < self.stages:
            raise ValueError(f"budget.steps ({self.steps}) must be at least budget.stages "
                             f"({self.stages}): every stage trains at least one step")


# Where the queries of a recall sequence sit: "compact", all of them right after the
# pairs, in a shuffled order; "spread", over the rest of the context, each at a gap
# after the pairs drawn from a power law (Zoology's MQAR; gap_exponent 0 is uniform).
QUERY_PLACEMENTS = ("compact", "spread")

# How the recall task enters a candidate's fitness (primer_search.fitness.recall.combine):
# "weighted": LM perplexity times exp(weight * recall loss + hinge_weight * the part of
# the recall loss above hinge_fraction of chance's), the exponential of a weighted sum of
# the two tasks' log losses, so that lower is better as before and a
# block that cannot recall pays for it in every hurdle stage; "report": the fitness is
# the LM perplexity alone and recall is measured beside it (for comparisons).
COMBINE_RULES = ("weighted", "report")

# When the recall task trains (primer_search.fitness.evaluate): "first", all of it before
# the language model's first stage, so that every hurdle sees the final recall loss;
# "staged", in the language model's stages, the same share of its steps in each, so that
# hurdle k sees the recall loss after that share and a candidate stopped there has paid
# for only that share. A candidate that passes every hurdle ends with the same recall
# loss either way (same steps, batches and schedule).
RECALL_TIMINGS = ("first", "staged")


@dataclasses.dataclass(frozen=True)
class RecallConfig:
    """The recall task: multi-query associative recall (MQAR, Arora et al. 2023).

    A sequence holds ``pairs`` key-value pairs (``k1 v1 k2 v2 ...``, distinct keys), then
    ``queries`` of those keys again, each followed by its value; the model is trained
    and scored only where it must predict a value after a query key, so the loss falls
    only if the block looks the value up in its context. The block trains from fresh
    parameters in the same language-model shell, with the same optimiser and batch
    shape as the language-model task (``fitness.data.seq_len`` and ``batch_size``), so
    one compiled step serves both tasks. Generated from a seed; nothing is read."""

    # Score candidates on recall too (false: language modelling alone, as before).
    enabled: bool = False
    # Distinct key and value tokens; a sequence draws its keys without replacement and
    # its values with replacement. Chance accuracy is 1 / num_values. Keys, values and
    # one filler token must fit in the language model's vocabulary.
    num_keys: int = 64
    num_values: int = 64
    # Key-value pairs per sequence, and how many of them are queried (None: all).
    pairs: int = 8
    queries: int | None = None
    # One of QUERY_PLACEMENTS, and the power law's exponent for "spread" (a gap g >= 0
    # after the pairs has weight (g + 1) ** -gap_exponent).
    placement: str = "compact"
    gap_exponent: float = 0.0
    # Training steps on the recall task. None: the language-model budget's steps, so
    # that the learning-rate schedule (and with it the compiled step) is shared. Under a
    # budget in seconds this must be set; the schedule then holds its peak after warm-up
    # whatever the length, and is shared too. Any other value compiles a step of its own,
    # and so does a retrain with a longer budget: it keeps this config's recall steps.
    steps: int | None = None
    # The recall task's peak learning rate. None: the language model's (optim's). A
    # plain Transformer with absolute positions learns to recall slowly at the width-
    # scaled rate (docs/benchmarks/efficacy.md: 0.05 of 16 pairs after 1,000 steps at
    # 0.9 / 128, 0.16 after 4,000 at 0.002), so a rung meant to see whether a block keeps
    # what attention does can give the task a rate of its own. Any value compiles a step
    # of its own, as another recall.steps does.
    learning_rate: float | None = None
    # Tokens a recall row holds (its model input; the row is one token longer). None: the
    # language model's fitness.data.seq_len, so that one compiled step serves both tasks.
    # A shorter row costs less when the language model's context is long and the pairs
    # are few (a sequence needs 2 x pairs + 2 x queries tokens); it compiles a training
    # and an evaluation step of its own.
    seq_len: int | None = None
    # Fresh sequences the trained model is scored on (a fixed set, the same for every
    # candidate), rounded up to whole batches.
    eval_sequences: int = 512
    # One of RECALL_TIMINGS: all the task's steps before the language model ("first"), or
    # spread over its hurdle stages ("staged"; the recall task is scored after each).
    timing: str = "first"
    # One of COMBINE_RULES; under "weighted", the weight of the recall loss, and the
    # extra weight of the part of it above hinge_fraction of the loss at chance
    # (ln num_values): a block that recalls (nearly) nothing pays hinge_weight on top,
    # while blocks that all recall pay only weight on their differences, so that seed
    # noise in recall does not outweigh their language modelling (docs,
    # concepts/recall.md). hinge_weight 0: the plain weighted sum.
    combine: str = "weighted"
    weight: float = 1.0
    hinge_weight: float = 0.0
    hinge_fraction: float = 0.9

    def __post_init__(self):
        for name in ("num_keys", "num_values", "pairs", "eval_sequences"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"recall.{name} must be an integer >= 1, got {value!r}")
        if self.pairs > self.num_keys:
            raise ValueError(f"recall.pairs ({self.pairs}) must be at most recall.num_keys "
                             f"({self.num_keys}): a sequence's keys are distinct")
        if self.queries is not None and not 1 <= self.queries <= self.pairs:
            raise ValueError(f"recall.queries must be None or between 1 and recall.pairs "
                             f"({self.pairs}), got {self.queries!r}")
        if self.placement not in QUERY_PLACEMENTS:
            raise ValueError(f"recall.placement must be one of {', '.join(QUERY_PLACEMENTS)}; "
                             f"got {self.placement!r}")
        if self.gap_exponent < 0:
            raise ValueError(f"recall.gap_exponent must be >= 0, got {self.gap_exponent}")
        if self.steps is not None and (isinstance(self.steps, bool) or self.steps < 1):
            raise ValueError(f"recall.steps must be None or >= 1, got {self.steps!r}")
        if self.learning_rate is not None and (isinstance(self.learning_rate, bool)
                                               or not self.learning_rate > 0):
            raise ValueError(f"recall.learning_rate must be None or a number > 0, got "
                             f"{self.learning_rate!r}")
        if self.seq_len is not None and (isinstance(self.seq_len, bool)
                                         or not isinstance(self.seq_len, int)
                                         or self.seq_len + 1 < self.length_needed()):
            raise ValueError(f"recall.seq_len must be None or an integer of at least "
                             f"{self.length_needed() - 1} (rows of {self.length_needed()} "
                             f"tokens: {self.pairs} pairs and {self.num_queries} queries), "
                             f"got {self.seq_len!r}")
        if self.timing not in RECALL_TIMINGS:
            raise ValueError(f"recall.timing must be one of {', '.join(RECALL_TIMINGS)}; got "
                             f"{self.timing!r}")
        if self.combine not in COMBINE_RULES:
            raise ValueError(f"recall.combine must be one of {', '.join(COMBINE_RULES)}; got "
                             f"{self.combine!r}")
        if not self.weight >= 0:
            raise ValueError(f"recall.weight must be >= 0, got {self.weight}")
        if not self.hinge_weight >= 0:
            raise ValueError(f"recall.hinge_weight must be >= 0, got {self.hinge_weight}")
        if not 0.0 < self.hinge_fraction <= 1.0:
            raise ValueError(f"recall.hinge_fraction must be in (0, 1], got "
                             f"{self.hinge_fraction}")

    @property
    def num_queries(self) -> int:
        return self.pairs if self.queries is None else self.queries

    @property
    def vocab_needed(self) -> int:
        """Token ids the task uses: a filler, the keys, the values."""
        return 1 + self.num_keys + self.num_values

    def length_needed(self) -> int:
        """Fewest tokens a sequence needs: the pairs, then each query and its value."""
        return 2 * self.pairs + 2 * self.num_queries


@dataclasses.dataclass(frozen=True)
class FitnessConfig:
    """Everything that defines how a candidate is scored: the language-model task (data,
    model, optimiser, budget) and, when enabled, the recall task beside it."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    budget: BudgetConfig = BudgetConfig()
    recall: RecallConfig = RecallConfig()
    # Seed of parameter initialisation and data order.
    seed: int = 0

    def __post_init__(self):
        r = self.recall
        if not r.enabled:
            return
        if r.seq_len is None and r.length_needed() > self.data.seq_len + 1:
            raise ValueError(
                f"recall: {r.pairs} pairs and {r.num_queries} queries need sequences of "
                f"{r.length_needed()} tokens, but fitness.data.seq_len is {self.data.seq_len} "
                f"(rows of {self.data.seq_len + 1}); use fewer pairs, a longer seq_len, or "
                f"recall rows of their own (recall.seq_len)")
        if r.steps is None and self.budget.seconds is not None:
            raise ValueError("recall.steps must be set when the budget is in seconds "
                             "(fitness.budget.seconds): the recall task trains a fixed "
                             "number of steps")
        if r.timing == "staged" and r.steps is not None and r.steps < self.budget.stages:
            raise ValueError(f"recall.steps ({r.steps}) must be at least budget.stages "
                             f"({self.budget.stages}) under recall.timing = 'staged': every "
                             f"stage trains the recall task at least one step")
