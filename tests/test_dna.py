"""DNA: immutable data, readable text, msgpack round trips, and clear errors."""

import random
import subprocess
import sys
from fractions import Fraction

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from primer_search.program import seeds
from primer_search.program.dna import (
    CALL,
    DNA,
    FORMAT,
    FORMAT_VERSION,
    DNAError,
    Instruction,
    fields_read,
    format_instruction,
    save_dna,
)
from primer_search.program.random_programs import random_dna
from primer_search.program.validate import canonical, load_dna, readable, validate

I = Instruction


def packed(subprograms, version=FORMAT_VERSION, fmt=FORMAT):
    return msgpack.packb({"format": fmt, "version": version, "subprograms": subprograms})


def test_dna_module_imports_no_jax_and_not_the_validator():
    code = ("import sys, primer_search.program.dna; "
            "print('jax' in sys.modules, 'primer_search.program.validate' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_dna_is_immutable_and_hashable():
    dna = seeds.get("transformer")
    with pytest.raises(AttributeError):
        dna.subprograms = ()
    with pytest.raises(AttributeError):
        dna.main.instructions[0].op = "ADD"
    assert hash(dna) == hash(seeds.get("transformer"))
    assert len({dna, seeds.get("transformer"), seeds.get("primer_ez")}) == 2


def test_str_reads_like_code():
    text = str(seeds.get("transformer"))
    lines = text.splitlines()
    assert lines[0] == "def main(h0, h1):"
    assert "    h3 = sub2(h2, heads=4)" in lines
    assert "    h4 = CONV_1X1(h3, dim=d)" in lines
    # One line per instruction, plus a def and a return per subprogram and blank lines.
    dna = seeds.get("transformer")
    assert sum(1 for l in lines if " = " in l) == dna.num_instructions()
    assert "h6 = C_ADD(h5, c=1e-06)" in readable(dna)


@pytest.mark.parametrize("seed", range(50))
def test_msgpack_round_trip_random_programs(seed, tmp_path):
    dna = random_dna(random.Random(seed))
    assert DNA.from_bytes(dna.to_bytes()) == dna
    path = tmp_path / "x.dna"
    save_dna(dna, path)
    assert load_dna(path) == dna
    assert load_dna(path).to_bytes() == dna.to_bytes()


def test_round_trip_keeps_exact_constants_and_fractions():
    dna = DNA.of([I("C_MUL", 0, const=0.1 + 0.2), I("CONV_1X1", 2, dim=Fraction(8, 3))])
    back = DNA.from_bytes(dna.to_bytes())
    assert back.main.instructions[0].const == 0.1 + 0.2
    assert back.main.instructions[1].dim == Fraction(8, 3)


@pytest.mark.parametrize("data, message", [
    (b"", "not a msgpack DNA file"),
    (b"\xc1garbage", "not a msgpack DNA file"),
    (msgpack.packb([1, 2]), "must hold a map"),
    (packed([[]], version=99), "version 99 is not supported"),
    (packed([[]], fmt="something-else"), "format field"),
    (packed([]), "non-empty list"),
    (packed([[["ADD", 0, 0]]]), "expected a list of 8 fields"),
    (packed([[["ADD", 0, 7, 0.0, 1, 1, 0, 1]]]), "in2 refers to h7"),
    (packed([[["ADD", -1, 0, 0.0, 1, 1, 0, 1]]]), "in1 refers to h-1"),
    (packed([[["ADD", "h0", 0, 0.0, 1, 1, 0, 1]]]), "in1 must be an integer"),
    (packed([[[CALL, 0, 0, 0.0, 1, 1, 0, 1]]]), "only call higher-numbered"),
    (packed([[[CALL, 0, 0, 0.0, 1, 1, 1, 1]], [[CALL, 0, 0, 0.0, 1, 1, 0, 1]]]),
     "only call higher-numbered"),
    (packed([[["C_MUL", 0, 0, float("nan"), 1, 1, 0, 1]]]), "not finite"),
    (packed([[["CONV_1X1", 0, 0, 0.0, 0, 1, 0, 1]]]), "must be positive"),
    (packed([[["CONV_1X1", 0, 0, 0.0, 1000, 1, 0, 1]]]), "dimension size 1000"),
    (packed([[[CALL, 0, 0, 0.0, 1, 1, 1, 3]], []]), "heads=3"),
])
def test_malformed_bytes_raise_dna_error(data, message):
    with pytest.raises(DNAError, match=message):
        DNA.from_bytes(data)


def test_load_dna_names_the_file_and_the_problem(tmp_path):
    with pytest.raises(DNAError, match="does not exist"):
        load_dna(tmp_path / "missing.dna")
    with pytest.raises(DNAError, match="is a directory"):
        load_dna(tmp_path)
    good = seeds.get("transformer").to_bytes()
    truncated = tmp_path / "truncated.dna"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(DNAError, match="truncated.dna: not a msgpack DNA file"):
        load_dna(truncated)
    unknown = tmp_path / "unknown.dna"
    unknown.write_bytes(packed([[["FROBNICATE", 0, 0, 0.0, 1, 1, 0, 1]]]))
    with pytest.raises(DNAError, match="subprogram 0, instruction 0.*unknown op 'FROBNICATE'"):
        load_dna(unknown)


def test_validation_errors_name_subprogram_instruction_and_problem():
    with pytest.raises(DNAError, match="returns width 1, but a block must map"):
        validate(DNA.of([I("RED_MEAN", 0)]))
    with pytest.raises(DNAError, match=r"subprogram 1, instruction 1 \(h3 = SCALE\(h2\)\).*"
                                       "sequence-width"):
        validate(DNA.of([I(CALL, 0, 0, target=1), I("MAT_MUL", 2, 0)],
                        [I("T_MAT_MUL", 0, 0), I("SCALE", 2)]))
    with pytest.raises(DNAError, match="heads=4 .* must return a width relative"):
        validate(DNA.of([I(CALL, 0, 0, target=1, heads=4), I("ADD", 0, 2)], [I("RED_SUM", 0)]))


def test_canonical_prunes_dead_code_and_unread_fields():
    live = DNA.of([I("CONV_1X1", 0, dim=2), I("CONV_1X1", 2, dim=1)])
    noisy = DNA.of([
        I("SIN", 1, const=3.0),                # dead
        I("CONV_1X1", 0, in2=1, const=7.0, dim=2),  # in2 and const unread
        I(CALL, 3, 0, target=1),              # dead call: sub1 becomes unreachable
        I("CONV_1X1", 3, dim=1),
    ], [I("EXP", 0)])
    assert canonical(noisy) == live
    assert canonical(canonical(noisy)) == canonical(noisy)


# ---- fuzzing: nothing but DNAError escapes the loader --------------------------------------

field = st.one_of(st.integers(-3, 40), st.floats(allow_nan=True), st.text(max_size=3),
                  st.none(), st.booleans(), st.binary(max_size=3))
instruction = st.one_of(
    st.lists(field, max_size=9),
    st.tuples(st.sampled_from(["ADD", "CONV_1X1", "CALL", "MASK", "NOPE", ""]),
              st.integers(-1, 6), st.integers(-1, 6), st.floats(), st.integers(-1, 70),
              st.integers(-1, 70), st.integers(-1, 4), st.integers(-1, 17)).map(list),
)
payload = st.fixed_dictionaries(
    {"format": st.sampled_from([FORMAT, "x"]), "version": st.sampled_from([1, 0, 2, "1"]),
     "subprograms": st.lists(st.lists(instruction, max_size=6), max_size=4)})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), payload.map(msgpack.packb)))
def test_fuzz_loader_raises_only_dna_error(data):
    try:
        validate(DNA.from_bytes(data))
    except DNAError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 400))
def test_fuzz_truncated_and_corrupted_files(seed, cut):
    good = random_dna(random.Random(seed)).to_bytes()
    corrupted = bytearray(good)
    corrupted[seed % len(good)] ^= 0xFF
    for data in (good[:cut], bytes(corrupted)):
        try:
            validate(DNA.from_bytes(data))
        except DNAError:
            pass


def test_fields_read_is_one_answer_for_calls_primitives_and_unknown_ops():
    assert fields_read(I(CALL, 0, 0, target=1)) == {"in1", "in2", "target", "heads"}
    assert fields_read(I("C_MUL", 0)) == {"in1", "const"}
    assert fields_read(I("CONV_1X1", 0)) == {"in1", "dim"}
    assert fields_read(I("ADD", 0, 1)) == {"in1", "in2"}
    assert fields_read(I("FROBNICATE", 0)) == {"in1", "in2", "const", "dim"}
    # Printing shows exactly the fields read.
    assert format_instruction(0, I("C_MUL", 1, 1, const=2.0, dim=3)) == "h2 = C_MUL(h1, c=2)"
