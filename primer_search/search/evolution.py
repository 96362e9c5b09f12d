"""Regularized (aging) evolution as a small, pure ask/tell object.

Real et al. 2019 (AmoebaNet), as used by Primer (So et al. 2021, Sec. 2): keep a
population of the P most recent candidates; to make a child, sample T members, take the
best (lowest fitness) as the parent and mutate it once; when a child's result comes back,
add it and remove the *oldest* member, not the worst, so that a lucky, noisy evaluation
cannot dominate forever.

Asynchronous steady state: ``propose()`` may be called whenever a worker is free, before
earlier proposals have come back. The initial population is copies of seed DNAs (the
paper's "conceptual initialisation": most random programs do not train), optionally
mixed with random programs.

No I/O, no Ray, no JAX training: the search loop owns those. Randomness is explicit: the
k-th proposal draws from ``random.Random(f"{seed}/{k}")``, so a search that is rebuilt
from its history with :meth:`recover` makes the same proposals it would have made.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Iterable, Sequence

from primer_search.fitness.hurdles import rank_key
from primer_search.program.dna import DNA
from primer_search.program.generation import MutationConfig, RandomSpec

__all__ = ["EvolutionConfig", "Member", "Proposal", "RegularizedEvolution"]


@dataclasses.dataclass(frozen=True)
class EvolutionConfig:
    """Regularized evolution's settings."""

    # Population size P: how many of the most recent candidates compete.
    population_size: int = 100
    # Tournament size T: members sampled to pick each parent.
    tournament_size: int = 10
    # Share of the initial population drawn as random programs instead of seed copies.
    random_initial_fraction: float = 0.0
    # How children are mutated.
    mutation: MutationConfig = MutationConfig()
    # Shape of random initial programs.
    random_spec: RandomSpec = RandomSpec()

    def __post_init__(self):
        if self.population_size < 1:
            raise ValueError(f"population_size must be >= 1, got {self.population_size}")
        if not 1 <= self.tournament_size <= self.population_size:
            raise ValueError(f"tournament_size must be in [1, population_size="
                             f"{self.population_size}], got {self.tournament_size}")
        if not 0.0 <= self.random_initial_fraction <= 1.0:
            raise ValueError("random_initial_fraction must be in [0, 1], got "
                             f"{self.random_initial_fraction}")


@dataclasses.dataclass(frozen=True)
class Member:
    """A finished candidate as the population sees it: its fitness and how many hurdle
    stages it completed (a candidate stopped at a hurdle ranks below every one that
    passed it; see :func:`primer_search.fitness.hurdles.rank_key`)."""

    id: int
    dna: DNA
    fitness: float
    stages: int = 1


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A child to evaluate: its DNA, its parent (None for the initial population) and
    what was done to make it ("seed:NAME", "random", or the mutation's description)."""

    dna: DNA
    parent_id: int | None
    mutation: str


def _key(member: Member) -> tuple:
    return rank_key(member.fitness, member.stages) + (member.id,)


class RegularizedEvolution:
    """``propose() -> Proposal``; ``feedback(member)``; ``recover(history)``.

    Args:
      config: the settings.
      seeds: ``(name, dna)`` pairs; the initial population cycles through them.
      seed: the search's random seed.
    """

    def __init__(self, config: EvolutionConfig, seeds: Sequence[tuple[str, DNA]], seed: int = 0):
        if not seeds:
            raise ValueError("regularized evolution needs at least one seed DNA")
        for where, spec in (("evolution.mutation.spec", config.mutation.spec),
                            ("evolution.random_spec", config.random_spec)):
            try:
                spec.check_ops()
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        self.config = config
        self.seeds = list(seeds)
        self.seed = seed
        self.population: collections.deque[Member] = collections.deque()
        self.num_proposed = 0
        self.num_finished = 0

    def _rng(self) -> random.Random:
        return random.Random(f"{self.seed}/{self.num_proposed}")

    def propose(self) -> Proposal:
        """The next child. The first P proposals are the initial population; after that,
        or whenever the population has members but the initial ones are all proposed,
        a tournament picks the parent."""
        # Mutating checks programs against the op vocabulary, which imports JAX; the
        # config above is plain data, so that loading a search config does not.
        from primer_search.program.mutations import MutationError, mutate
        from primer_search.program.random_programs import random_dna

        rng = self._rng()
        cfg = self.config
        k = self.num_proposed
        self.num_proposed += 1
        if k < cfg.population_size or not self.population:
            if rng.random() < cfg.random_initial_fraction:
                return Proposal(random_dna(rng, cfg.random_spec), None, "random")
            name, dna = self.seeds[k % len(self.seeds)]
            if k >= cfg.population_size:  # nothing has come back yet: mutate a seed
                child, how = mutate(dna, rng, cfg.mutation)
                return Proposal(child, None, f"seed:{name}; {how}")
            return Proposal(dna, None, f"seed:{name}")
        members = list(self.population)
        sample = rng.sample(members, min(cfg.tournament_size, len(members)))
        # The tournament winner is the parent; in the rare case that no valid, different
        # child of it can be drawn, the next best in the sample is tried.
        for parent in sorted(sample, key=_key):
            try:
                child, how = mutate(parent.dna, rng, cfg.mutation)
            except MutationError:
                continue
            return Proposal(child, parent.id, how)
        name, dna = self.seeds[k % len(self.seeds)]
        child, how = mutate(dna, rng, cfg.mutation)
        return Proposal(child, None, f"seed:{name}; {how} (no member of the tournament "
                        "could be mutated)")

    def feedback(self, member: Member) -> None:
        """A candidate finished: it joins the population; the oldest leaves past P."""
        self.population.append(member)
        self.num_finished += 1
        while len(self.population) > self.config.population_size:
            self.population.popleft()

    def recover(self, history: Iterable[Member], num_proposed: int) -> None:
        """Rebuild from finished members in the order they finished, and the number of
        proposals made so far (finished or not)."""
        self.population.clear()
        self.num_finished = 0
        for member in history:
            self.feedback(member)
        self.num_proposed = num_proposed

    def best(self) -> Member | None:
        """The best member of the current population."""
        if not self.population:
            return None
        return min(self.population, key=_key)
