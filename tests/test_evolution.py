"""Regularized evolution: pure, seeded, aging, and it improves a (toy) fitness."""

import hashlib

import pytest

from primer_search.fitness.toy import toy_fitness
from primer_search.program import seeds
from primer_search.program.validate import dna_hash
from primer_search.search.evolution import EvolutionConfig, Member, RegularizedEvolution

SEEDS = [("transformer", seeds.get("transformer")), ("primer_ez", seeds.get("primer_ez"))]


def run_sequential(n: int, seed: int = 0, population: int = 10, tournament: int = 3):
    """Propose, score with the toy fitness, feed back, n times. Returns the trace."""
    evo = RegularizedEvolution(EvolutionConfig(population_size=population,
                                               tournament_size=tournament), SEEDS, seed=seed)
    trace = []
    for cid in range(n):
        proposal = evo.propose()
        fitness = toy_fitness(proposal.dna)
        evo.feedback(Member(cid, proposal.dna, fitness))
        trace.append((dna_hash(proposal.dna), proposal.parent_id, fitness))
    return evo, trace


def trace_digest(trace) -> str:
    return hashlib.sha256(repr(trace).encode()).hexdigest()[:16]


def test_initial_population_is_seed_copies():
    evo = RegularizedEvolution(EvolutionConfig(population_size=4, tournament_size=2), SEEDS)
    proposals = [evo.propose() for _ in range(4)]
    assert [p.mutation for p in proposals] == ["seed:transformer", "seed:primer_ez"] * 2
    assert all(p.parent_id is None for p in proposals)
    assert proposals[0].dna == seeds.get("transformer")


def test_seeded_search_is_reproducible_and_improves():
    evo_a, a = run_sequential(150)
    _, b = run_sequential(150)
    assert a == b
    _, c = run_sequential(150, seed=1)
    assert c != a
    start = toy_fitness(seeds.get("transformer"))
    assert evo_a.best().fitness < start - 3, (evo_a.best().fitness, start)


def test_permanence_of_the_search_path():
    """Pins the exact path of a seeded run. If this changes, a change altered what a
    seeded search does (mutations, sampling, ordering): make sure that was intended,
    then update the digest."""
    _, trace = run_sequential(60)
    assert trace_digest(trace) == PINNED_DIGEST, trace_digest(trace)


PINNED_DIGEST = "81888cff69fbabdd"  # vocabulary grew by primitives.extended


def test_aging_removes_a_lucky_old_individual_after_p_newer_ones():
    P = 5
    evo = RegularizedEvolution(EvolutionConfig(population_size=P, tournament_size=P), SEEDS)
    dna = seeds.get("transformer")
    evo.feedback(Member(0, dna, fitness=0.0))  # lucky: the best there will ever be
    for cid in range(1, P):
        evo.feedback(Member(cid, dna, fitness=10.0))
        assert evo.best().id == 0
    # With T = P every tournament sees it, so it is the parent while it lives.
    evo.num_proposed = P
    assert evo.propose().parent_id == 0
    evo.feedback(Member(P, dna, fitness=10.0))  # the P-th newer one
    assert 0 not in [m.id for m in evo.population]
    assert evo.best().fitness == 10.0


def test_recover_replays_history_and_continues_identically():
    evo, trace = run_sequential(40)
    history = list(evo.population)
    fresh = RegularizedEvolution(evo.config, SEEDS, seed=0)
    # Only the population matters for the future; rebuild from the last P members.
    fresh.recover(history, num_proposed=evo.num_proposed)
    assert [m.id for m in fresh.population] == [m.id for m in evo.population]
    assert fresh.propose() == evo.propose()


def test_bad_config_names_the_value():
    with pytest.raises(ValueError, match="tournament_size must be in .1, population_size=5.*got 9"):
        EvolutionConfig(population_size=5, tournament_size=9)
