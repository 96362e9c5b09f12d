"""How programs are generated: the settings of random programs (:class:`RandomSpec`)
and of mutations (:class:`MutationConfig`), plain data that a search config holds.

No JAX: loading a search config reads these, and the code that uses them
(:mod:`~primer_search.program.random_programs`, :mod:`~primer_search.program.mutations`)
checks programs against the op vocabulary, which imports JAX.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping, Sequence

__all__ = ["MUTATION_NAMES", "MutationConfig", "RandomSpec"]

# The mutations :func:`~primer_search.program.mutations.mutate` knows, in the order of its
# table (``mutations.MUTATIONS``; a test holds the two equal).
MUTATION_NAMES = ("delete", "insert", "delete_insert", "change", "swap", "perturb")


def _weight_pairs(value, where: str, noun: str, pair_text: str, hint: str = "",
                  known: tuple[str, ...] | None = None) -> tuple[tuple[str, float], ...]:
    """``value`` (``(name, weight)`` pairs, or a mapping) as a tuple of pairs with float
    weights; a malformed entry, a name not in ``known`` (when given), a name listed twice
    or a weight that is not a finite number >= 0 is a ValueError naming it."""
    pairs = value.items() if isinstance(value, Mapping) else value
    weights: list[tuple[str, float]] = []
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[0], str):
            raise ValueError(f"{where} entry {pair!r} must be {pair_text}{hint}")
        name, weight = pair
        if known is not None and name not in known:
            raise ValueError(f"unknown {noun} {name!r} in {where}{hint}")
        if any(name == seen for seen, _ in weights):
            raise ValueError(f"{noun} {name!r} is listed twice in {where}")
        if (isinstance(weight, bool) or not isinstance(weight, (int, float))
                or not math.isfinite(weight) or weight < 0):
            raise ValueError(f"{where}: weight {weight!r} of {noun} {name!r} must be a finite "
                             f"number >= 0{hint}")
        weights.append((name, float(weight)))
    return tuple(weights)


@dataclasses.dataclass(frozen=True)
class RandomSpec:
    """What random programs look like."""

    # Ops to draw from (primitive names); None means the whole vocabulary.
    ops: tuple[str, ...] | None = None
    # Inclusive range of the number of subprograms, MAIN included.
    num_subprograms: tuple[int, int] = (1, 3)
    # Inclusive range of instructions per subprogram (MAIN may get one more to close it).
    num_instructions: tuple[int, int] = (2, 10)
    # Probability that an instruction is a call, when a callee exists.
    call_prob: float = 0.2
    # An op prior: (op name, weight) pairs, the relative odds of each op where a primitive
    # is drawn (an inserted instruction, a changed op, a random program); an op not named
    # weighs 1. Empty: every op equally likely (and the same draws as before the prior
    # existed, so a seeded search proposes what it always did). A mapping is accepted.
    op_weights: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "op_weights", _weight_pairs(
            self.op_weights, "op_weights", "op", "an (op name, weight) pair"))

    def op_names(self) -> tuple[str, ...]:
        if self.ops is not None:
            return tuple(self.ops)
        import primitives  # the vocabulary's registry imports JAX: only when drawing

        return primitives.names()

    def check_ops(self) -> None:
        """Refuse an op prior that names an op outside the ops drawn from (imports the
        vocabulary, and with it JAX)."""
        names = self.op_names()
        unknown = [op for op, _ in self.op_weights if op not in names]
        if unknown:
            raise ValueError(f"op_weights names {', '.join(map(repr, unknown))}, not among "
                             f"the ops drawn from: {', '.join(names)}")
        if self.op_weights and not any(self.weight_of(op) > 0 for op in names):
            raise ValueError(f"op_weights {self.op_weights!r} gives no op a positive weight")

    def weight_of(self, op: str) -> float:
        return next((w for name, w in self.op_weights if name == op), 1.0)

    def draw_op(self, rng: random.Random, names: Sequence[str]) -> str:
        """One of ``names``, by the op prior (uniform without one); at least one of them
        must weigh more than 0."""
        if not self.op_weights:
            return rng.choice(names)
        return rng.choices(names, [self.weight_of(op) for op in names])[0]



def _known() -> str:
    return ", ".join(MUTATION_NAMES)


@dataclasses.dataclass(frozen=True)
class MutationConfig:
    """How :func:`mutate` makes a child."""

    # (mutation name, weight) pairs; a mutation is proposed with probability proportional
    # to its weight, and names left out are never proposed. A mapping is accepted too.
    # Invalid proposals are rejected, so a kind that often breaks shape rules is realised
    # somewhat less often than its weight says.
    weights: tuple[tuple[str, float], ...] = (
        ("delete", 1.0), ("insert", 1.0), ("delete_insert", 1.0), ("change", 1.0),
        ("swap", 1.0), ("perturb", 1.0))
    # Most instructions per subprogram: a child that grows a subprogram past this is
    # rejected (a parent already longer may keep its length, never grow).
    max_instructions: int = 64
    # Proposals (invalid, inapplicable or equivalent ones included) before giving up.
    max_tries: int = 100
    # What inserted and changed instructions look like (ops, call probability).
    spec: RandomSpec = dataclasses.field(default_factory=RandomSpec)

    def __post_init__(self):
        weights = _weight_pairs(self.weights, "MutationConfig.weights", "mutation",
                                "a (name, weight) pair", f"; known mutations: {_known()}",
                                known=MUTATION_NAMES)
        if not any(w > 0 for _, w in weights):
            raise ValueError(f"MutationConfig.weights {tuple(weights)!r} gives no mutation a "
                             f"positive weight; known mutations: {_known()}")
        object.__setattr__(self, "weights", weights)
        for name in ("max_instructions", "max_tries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MutationConfig.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.spec, RandomSpec):
            raise TypeError(f"MutationConfig.spec must be a RandomSpec, got {self.spec!r}")
