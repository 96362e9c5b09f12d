"""Mutations: the shared contract every mutation keeps, exact reference fixing, perturbation
statistics, and the ``mutate`` driver (validity, reproducibility, weights, errors)."""

import math
import random
import re
import statistics
from fractions import Fraction

import pytest

import primitives
from primer_search.program import seeds
from primer_search.program.dna import CALL, DNA, HEADS, DNAError, Instruction
from primer_search.program.mutations import (
    MUTATIONS,
    MutationConfig,
    MutationError,
    change,
    delete,
    delete_instruction,
    insert,
    insert_instruction,
    mutate,
    perturb,
    perturb_dim,
    swap,
    swap_instructions,
)
from primer_search.program.random_programs import DIM_BANK, RandomSpec, random_dna
from primer_search.program.validate import canonical, dna_hash, validate

I = Instruction
SPEC = RandomSpec()
PARENTS = ([(f"random{i}", random_dna(random.Random(i))) for i in range(30)]
           + [(name, seeds.get(name)) for name in seeds.names()])
PARENT_IDS = [name for name, _ in PARENTS]
PARENT_DNAS = [dna for _, dna in PARENTS]
# A five-instruction MAIN whose references cross each other:
# h2 = SQUARE(h0); h3 = ADD(h2, h1); h4 = MULTIPLY(h3, h2); h5 = TANH(h4); h6 = ADD(h5, h3)
CROSSED = DNA.of([I("SQUARE", 0), I("ADD", 2, 1), I("MULTIPLY", 3, 2), I("TANH", 4),
                  I("ADD", 5, 3)])


def main_of(dna: DNA) -> list[Instruction]:
    return list(dna.main.instructions)


def parts(description: str) -> list[str]:
    return description.split("; ")


# ---- the shared contract: every mutation, every parent ------------------------------

def test_registry_lists_the_papers_mutations_in_order():
    assert list(MUTATIONS) == ["delete", "insert", "delete_insert", "change", "swap", "perturb"]


@pytest.mark.parametrize("parent", PARENT_DNAS, ids=PARENT_IDS)
@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mutation_contract(name, parent):
    """None, or a structurally valid child that differs from the parent; validation of the
    child either passes or raises DNAError (which ``mutate`` redraws). Never raises itself,
    never modifies the parent, and the same seed gives the same result."""
    before = parent.to_bytes()
    fn = MUTATIONS[name]
    prefix = "delete" if name == "delete_insert" else name
    for seed in range(6):
        result = fn(random.Random(seed), parent, SPEC)
        assert parent.to_bytes() == before
        assert parent == DNA.from_bytes(before)
        assert result == fn(random.Random(seed), parent, SPEC)
        if result is None:
            continue
        child, text = result
        assert isinstance(child, DNA) and isinstance(text, str)
        assert text.startswith(prefix + " ")
        # delete_insert may splice the deleted instruction back where it was (insert is
        # the inverse of delete's bypass); `mutate` redraws such children.
        assert child != parent or name == "delete_insert"
        assert DNA.from_bytes(child.to_bytes()) == child  # structure and round trip
        assert len(child.subprograms) == len(parent.subprograms)
        try:
            validate(child)
        except DNAError:
            pass


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_every_mutation_makes_valid_changed_children(name):
    """No mutation is vacuous: on the seeds it often yields a valid child of another
    canonical form."""
    changed = 0
    for parent in (seeds.get(n) for n in seeds.names()):
        form = canonical(parent)
        for seed in range(10):
            result = MUTATIONS[name](random.Random(seed), parent, SPEC)
            try:
                changed += result is not None and canonical(result[0]) != form
            except DNAError:
                pass
    assert changed >= 2


def test_none_where_a_mutation_cannot_apply():
    empty = DNA.of([])
    single = DNA.of([I("SQUARE", 0)], [I("TANH", 0)])
    for seed in range(5):
        rng = random.Random(seed)
        assert delete(rng, empty, SPEC) is None
        assert MUTATIONS["delete_insert"](rng, empty, SPEC) is None
        assert change(rng, empty, SPEC) is None
        assert swap(rng, single, SPEC) is None  # no subprogram has two instructions
        # SQUARE ignores its constant and dimension: nothing to perturb.
        assert perturb(rng, DNA.of([I("SQUARE", 0, const=3.0, dim=2)]), SPEC) is None
        assert insert(rng, empty, SPEC) is not None


# ---- reference fixing ----------------------------------------------------------------

def test_delete_bypasses_the_deleted_op_and_shifts_later_references():
    # Delete h3 = ADD(h2, h1): its readers read h2 (its input 1); h4.. become h3..
    assert main_of(delete_instruction(CROSSED, 0, 1)) == [
        I("SQUARE", 0), I("MULTIPLY", 2, 2), I("TANH", 3), I("ADD", 4, 2)]
    # Delete the first instruction: readers of h2 read h0.
    assert main_of(delete_instruction(CROSSED, 0, 0)) == [
        I("ADD", 0, 1), I("MULTIPLY", 2, 0), I("TANH", 3), I("ADD", 4, 2)]
    # Delete the last: the previous state becomes the return value.
    assert main_of(delete_instruction(CROSSED, 0, 4)) == main_of(CROSSED)[:4]


def test_delete_of_a_call_bypasses_to_its_first_argument():
    dna = DNA.of([I("SQUARE", 0), I(CALL, 2, 1, target=1, heads=2), I("ADD", 3, 2)],
                 [I("TANH", 0)])
    child = delete_instruction(dna, 0, 1)
    assert main_of(child) == [I("SQUARE", 0), I("ADD", 2, 2)]
    assert child.subprograms[1] == dna.subprograms[1]


def test_insert_splices_and_shifts_later_references_up():
    child = insert_instruction(CROSSED, 0, 2, I("SIN", 3))
    # Later readers of h3 (the new op's input) now read the new state h4; the rest shift.
    assert main_of(child) == [I("SQUARE", 0), I("ADD", 2, 1), I("SIN", 3),
                              I("MULTIPLY", 4, 2), I("TANH", 5), I("ADD", 6, 4)]
    # Inserting at the end makes the new state the return value; nothing else moves.
    assert main_of(insert_instruction(CROSSED, 0, 5, I("COS", 6))) == (
        main_of(CROSSED) + [I("COS", 6)])
    with pytest.raises(IndexError):
        insert_instruction(CROSSED, 0, 6, I("COS", 0))


@pytest.mark.parametrize("parent", PARENT_DNAS[:10], ids=PARENT_IDS[:10])
def test_random_insert_and_delete_use_the_exact_edits(parent):
    sites = [(s, i) for s, sub in enumerate(parent.subprograms) for i in range(len(sub))]
    deletions = {delete_instruction(parent, s, i) for s, i in sites}
    for seed in range(10):
        assert delete(random.Random(seed), parent, SPEC)[0] in deletions
        child, text = insert(random.Random(seed), parent, SPEC)
        s, i = map(int, re.match(r"insert sub(\d+)\[(\d+)\]: h\d+ = ", text).groups())
        # Delete bypasses what insert spliced in, so deleting it again restores the parent.
        assert delete_instruction(child, s, i) == parent


def test_swap_exchanges_references_to_the_swapped_states():
    # h2 = SQUARE(h0); h3 = TANH(h1); h4 = ADD(h2, h3); h5 = SIN(h4)
    dna = DNA.of([I("SQUARE", 0), I("TANH", 1), I("ADD", 2, 3), I("SIN", 4)])
    child, redirected = swap_instructions(dna, 0, 0, 1, random.Random(0))
    assert redirected == 0
    assert main_of(child) == [I("TANH", 1), I("SQUARE", 0), I("ADD", 3, 2), I("SIN", 4)]
    # Swapping the last two of h2 = SQUARE(h0); h3 = TANH(h1); h4 = ADD(h2, h3);
    # h5 = SIN(h2) needs no redirect, but changes the return value from SIN to ADD.
    dna = DNA.of([I("SQUARE", 0), I("TANH", 1), I("ADD", 2, 3), I("SIN", 2)])
    child, redirected = swap_instructions(dna, 0, 3, 2, random.Random(0))
    assert redirected == 0
    assert main_of(child) == [I("SQUARE", 0), I("TANH", 1), I("SIN", 2), I("ADD", 2, 3)]
    with pytest.raises(IndexError):
        swap_instructions(dna, 0, 1, 1, random.Random(0))


class FirstChoice(random.Random):
    """An rng whose ``randrange`` always gives 0: redirected references go to h0."""

    def randrange(self, *args, **kwargs):
        return 0


def test_swap_redirects_forward_references_exactly():
    # Swap h3 = ADD(h2, h1) and h5 = TANH(h4) in CROSSED. TANH moves to position 1, where
    # h4 is in the future; MULTIPLY(h3, h2) would read h5 (the moved ADD) from position 2.
    child, redirected = swap_instructions(CROSSED, 0, 1, 3, FirstChoice())
    assert redirected == 2
    assert main_of(child) == [I("SQUARE", 0), I("TANH", 0), I("MULTIPLY", 0, 2),
                              I("ADD", 2, 1), I("ADD", 3, 5)]


def test_swap_redirects_to_uniform_earlier_states():
    seen = {1: set(), 2: set()}
    for seed in range(200):
        child, redirected = swap_instructions(CROSSED, 0, 1, 3, random.Random(seed))
        ins = main_of(child)
        assert redirected == 2
        seen[1].add(ins[1].in1)
        seen[2].add(ins[2].in1)
        assert ins[0] == I("SQUARE", 0) and ins[3:] == [I("ADD", 2, 1), I("ADD", 3, 5)]
        assert ins[2].in2 == 2
    assert seen == {1: {0, 1, 2}, 2: {0, 1, 2, 3}}


def test_random_swap_describes_what_it_did():
    texts = {swap(random.Random(seed), CROSSED, SPEC)[1] for seed in range(40)}
    assert "swap sub0[1] <-> sub0[3] (2 inputs redirected)" in texts
    assert all(re.fullmatch(r"swap sub0\[(\d)\] <-> sub0\[(\d)\]( \(\d inputs? redirected\))?",
                            t) for t in texts)


# ---- change ---------------------------------------------------------------------------

@pytest.mark.parametrize("parent", PARENT_DNAS, ids=PARENT_IDS)
def test_change_redraws_one_read_field_of_one_instruction(parent):
    for seed in range(10):
        child, text = change(random.Random(seed), parent, SPEC)
        diffs = [(s, i, a, b)
                 for s, (old, new) in enumerate(zip(parent.subprograms, child.subprograms))
                 for i, (a, b) in enumerate(zip(old.instructions, new.instructions)) if a != b]
        assert len(diffs) == 1
        s, i, old, new = diffs[0]
        assert text.startswith(f"change sub{s}[{i}] ")
        if old.op == new.op and (old.target, old.heads) == (new.target, new.heads):
            fields = [f for f in ("in1", "in2", "const", "dim")
                      if getattr(old, f) != getattr(new, f)]
            assert len(fields) == 1
            reads = {"in1", "in2"} if old.is_call else primitives.get(old.op).reads()
            assert fields[0] in reads
            assert text.split()[2] == fields[0]
        else:
            assert text.split()[2] == "op"


def test_change_op_draws_fields_the_old_op_ignored():
    # CONV_1X1 ignores its constant (0.0 here); C_MUL reads it, so it is drawn fresh.
    dna = DNA.of([I("CONV_1X1", 0, dim=1)])
    spec = RandomSpec(ops=("CONV_1X1", "C_MUL"))
    consts = set()
    for seed in range(60):
        child, text = change(random.Random(seed), dna, spec)
        ins = child.main.instructions[0]
        if ins.op == "C_MUL":
            assert text.startswith("change sub0[0] op CONV_1X1 -> C_MUL: h2 = C_MUL(h0, c=")
            consts.add(ins.const)
    assert len(consts) > 3


def test_change_op_can_become_a_call_with_random_heads():
    dna = DNA.of([I("SQUARE", 0)], [I("TANH", 0)], [I("SIN", 0)])
    spec = RandomSpec(call_prob=1.0)
    calls = set()
    for seed in range(300):
        child, text = change(random.Random(seed), dna, spec)
        ins = child.main.instructions[0]
        if ins.is_call:
            calls.add((ins.target, ins.heads))
            assert text.startswith("change sub0[0] op SQUARE -> CALL sub")
    assert {t for t, _ in calls} == {1, 2} and {h for _, h in calls} == set(HEADS)


# ---- perturb ----------------------------------------------------------------------------

def test_perturb_constant_is_log_normal_with_unit_spread():
    c = 1e6  # large enough that the additive N(0, 1) term does not matter
    dna = DNA.of([I("C_MUL", 0, const=c)])
    rng = random.Random(0)
    ratios = []
    for _ in range(2000):
        child, text = perturb(rng, dna, SPEC)
        assert text.startswith("perturb sub0[0] const 1e+06 -> ")
        ratios.append(math.log10(abs(child.main.instructions[0].const) / c))
    assert abs(statistics.fmean(ratios)) < 0.1
    assert 0.9 < statistics.stdev(ratios) < 1.1


def test_perturb_constant_zero_gets_unit_noise():
    dna = DNA.of([I("C_ADD", 0, const=0.0)])
    rng = random.Random(1)
    values = [perturb(rng, dna, SPEC)[0].main.instructions[0].const for _ in range(2000)]
    assert abs(statistics.fmean(values)) < 0.1
    assert 0.9 < statistics.stdev(values) < 1.1


@pytest.mark.parametrize("k", range(len(DIM_BANK)))
def test_perturb_dim_moves_to_a_neighbouring_bank_size(k):
    dna = DNA.of([I("CONV_1X1", 0, dim=DIM_BANK[k])])
    rng = random.Random(k)
    seen = {perturb(rng, dna, SPEC)[0].main.instructions[0].dim for _ in range(40)}
    assert seen == {DIM_BANK[j] for j in (k - 1, k + 1) if 0 <= j < len(DIM_BANK)}


@pytest.mark.parametrize("dim, nearest", [
    (Fraction(13, 16), Fraction(3, 4)), (Fraction(8, 3), Fraction(3)),
    (Fraction(1, 32), Fraction(1, 16)), (Fraction(16), Fraction(4))])
def test_perturb_dim_outside_the_bank_moves_to_the_nearest_bank_size(dim, nearest):
    assert perturb_dim(random.Random(0), dim) == nearest
    child, text = perturb(random.Random(0), DNA.of([I("CONV_3X1", 0, dim=dim)]), SPEC)
    assert child.main.instructions[0].dim == nearest
    assert text.startswith("perturb sub0[0] dim ")


# ---- the driver ------------------------------------------------------------------------

@pytest.mark.parametrize("parent", PARENT_DNAS, ids=PARENT_IDS)
def test_mutate_gives_a_valid_child_of_another_canonical_form(parent):
    before = parent.to_bytes()
    form = canonical(parent)
    for seed in range(5):
        child, text = mutate(parent, random.Random(seed))
        validate(child)
        assert canonical(child) != form
        assert text and all(p.split()[0] in MUTATIONS for p in parts(text))
        assert parent.to_bytes() == before


def test_mutate_is_reproducible():
    parent = seeds.get("transformer")
    runs = [mutate(parent, random.Random(seed)) for seed in range(20)]
    assert runs == [mutate(parent, random.Random(seed)) for seed in range(20)]
    assert len({child for child, _ in runs}) > 10


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mutate_uses_only_the_weighted_mutations(name):
    # Insert alone rarely changes the canonical form (an inserted state is read only at
    # the end of a subprogram), so it may need long chains: give it more tries.
    cfg = MutationConfig(weights=((name, 2.5),), max_tries=300)
    prefix = "delete" if name == "delete_insert" else name
    for seed in range(15):
        _, text = mutate(seeds.get("primer_ez"), random.Random(seed), cfg)
        assert all(p.startswith(prefix + " ") for p in parts(text)), text


def test_mutate_chains_equivalent_children():
    """A dead insert does not change the canonical form, so the child is mutated again."""
    cfg = MutationConfig(weights={"insert": 1.0})
    texts = [mutate(seeds.get("transformer"), random.Random(s), cfg)[1] for s in range(20)]
    assert any(len(parts(t)) > 1 for t in texts)
    assert all(p.startswith("insert sub") for t in texts for p in parts(t))


def test_mutate_draws_again_after_invalid_children_and_then_gives_up():
    # The only dim sets MAIN's output width: every perturbation of it is invalid.
    parent = DNA.of([I("CONV_1X1", 0, dim=1)])
    with pytest.raises(MutationError) as err:
        mutate(parent, random.Random(0), MutationConfig(weights={"perturb": 1.0}, max_tries=30))
    assert isinstance(err.value, ValueError)
    assert dna_hash(parent)[:16] in str(err.value)
    assert "perturb invalid x30" in str(err.value)


def test_mutate_reports_inapplicable_mutations():
    with pytest.raises(MutationError, match="delete inapplicable x10"):
        mutate(DNA.of([]), random.Random(0),
               MutationConfig(weights={"delete": 1.0}, max_tries=10))


def test_mutate_does_not_grow_subprograms_past_the_limit():
    parent = seeds.get("transformer")
    lengths = [len(s) for s in parent.subprograms]  # [9, 9, 6, 6, 2]
    cfg = MutationConfig(max_instructions=7)
    grown = 0
    for seed in range(40):
        child, _ = mutate(parent, random.Random(seed), cfg)
        new_lengths = [len(s) for s in child.subprograms]
        assert all(new <= max(old, 7) for old, new in zip(lengths, new_lengths))
        grown += any(new > old for old, new in zip(lengths, new_lengths))
    assert grown
    with pytest.raises(MutationError, match="past 1 instructions"):
        mutate(DNA.of([I("SQUARE", 0), I("ADD", 2, 0)]), random.Random(0),
               MutationConfig(weights={"insert": 1.0}, max_instructions=1, max_tries=20))


def test_mutate_rejects_an_invalid_parent():
    with pytest.raises(DNAError, match="main"):
        mutate(DNA.of([I("RED_MEAN", 0)]), random.Random(0))


@pytest.mark.parametrize("weights, message", [
    ((("shuffle", 1.0),), r"unknown mutation 'shuffle'.*delete, insert, delete_insert"),
    ((("swap", -1.0),), r"weight -1.0 of mutation 'swap'"),
    ((("swap", float("nan")),), r"weight nan of mutation 'swap'"),
    ((("swap", 0.0), ("delete", 0)), r"no mutation a positive weight.*change, swap"),
    ((), r"no mutation a positive weight"),
    ((("swap", 1.0), ("swap", 2.0)), r"'swap' is listed twice"),
    ((("swap",),), r"must be a \(name, weight\) pair"),
])
def test_bad_weights_name_the_bad_value(weights, message):
    with pytest.raises(ValueError, match=message):
        MutationConfig(weights=weights)


def test_config_checks_limits_and_accepts_a_mapping():
    with pytest.raises(ValueError, match="max_tries must be an integer >= 1, got 0"):
        MutationConfig(max_tries=0)
    with pytest.raises(ValueError, match="max_instructions"):
        MutationConfig(max_instructions=-3)
    cfg = MutationConfig(weights={"swap": 1, "perturb": 0.5})
    assert cfg.weights == (("swap", 1.0), ("perturb", 0.5))
    assert cfg == MutationConfig(weights=(("swap", 1.0), ("perturb", 0.5)))


def test_an_op_prior_draws_ops_at_their_odds_and_without_one_draws_as_before():
    ops = ("ADD", "MULTIPLY", "DCONV_3X1")
    uniform = RandomSpec(ops=ops)
    weighted = RandomSpec(ops=ops, op_weights={"DCONV_3X1": 6.0, "MULTIPLY": 0.0})
    draws = [weighted.draw_op(random.Random(s), ops) for s in range(2000)]
    assert "MULTIPLY" not in draws
    assert draws.count("DCONV_3X1") / len(draws) == pytest.approx(6 / 7, abs=0.03)
    # An empty prior draws exactly what the uniform choice always drew: seeded searches
    # of existing configs propose the same children.
    assert [uniform.draw_op(random.Random(s), ops) for s in range(50)] == [
        random.Random(s).choice(ops) for s in range(50)]
    # A changed op follows the prior too: it never becomes an op the prior weighs 0 (an
    # ADD whose op changes can only become the convolution).
    dna = DNA.of([I("ADD", 0, 1)])
    changed = [change(random.Random(s), dna, weighted)[0].main.instructions[0].op
               for s in range(300)]
    assert set(changed) == {"ADD", "DCONV_3X1"}


@pytest.mark.parametrize("weights, message", [
    ({"DCONV_3X1": -1.0}, r"weight -1.0 of op 'DCONV_3X1' must be a finite number >= 0"),
    ((("ADD", 1.0), ("ADD", 2.0)), r"op 'ADD' is listed twice"),
    ((("ADD",),), r"entry \('ADD',\) must be an \(op name, weight\) pair"),
])
def test_a_bad_op_prior_names_the_bad_value(weights, message):
    with pytest.raises(ValueError, match=message):
        RandomSpec(op_weights=weights)


def test_an_op_prior_naming_an_unknown_op_is_refused_when_the_search_starts():
    from primer_search.search.evolution import EvolutionConfig, RegularizedEvolution

    spec = RandomSpec(op_weights={"DCONV_5X1": 4.0})
    with pytest.raises(ValueError, match=r"evolution.mutation.spec: op_weights names "
                                         r"'DCONV_5X1', not among the ops drawn from: .*DCONV_3X1"):
        RegularizedEvolution(EvolutionConfig(mutation=MutationConfig(spec=spec)),
                             [("transformer", seeds.get("transformer"))])
    zero = RandomSpec(ops=("ADD",), op_weights={"ADD": 0.0})
    with pytest.raises(ValueError, match="gives no op a positive weight"):
        RegularizedEvolution(EvolutionConfig(random_spec=zero),
                             [("transformer", seeds.get("transformer"))])
