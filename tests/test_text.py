"""Programs as text: what ``str(dna)`` prints reads back to the same DNA, wherever a DNA
file is read, and a mistake names its line and what was expected."""

import random
import subprocess
import sys
from fractions import Fraction

import pytest

from primer_search.cli import main
from primer_search.program import seeds
from primer_search.program.dna import CALL, DNA, DNAError, Instruction, save_dna
from primer_search.program.random_programs import random_dna
from primer_search.program.text import is_text, parse
from primer_search.program.validate import canonical, load_dna, validate

I = Instruction


def test_text_module_imports_no_jax():
    code = ("import sys, primer_search.program.text; "
            "print('jax' in sys.modules, 'primer_search.program.validate' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


@pytest.mark.parametrize("name", seeds.names())
def test_every_seed_round_trips_exactly(name):
    dna = seeds.get(name)
    back = parse(str(dna))
    assert back == dna and back.to_bytes() == dna.to_bytes()
    assert "# unread" not in str(dna)  # seeds are canonical: nothing unread to keep


def test_a_thousand_random_programs_round_trip_exactly():
    for seed in range(1000):
        dna = random_dna(random.Random(seed))
        back = DNA.from_text(str(dna))
        assert back.to_bytes() == dna.to_bytes(), f"random program {seed}:\n{dna}"


def test_the_printer_keeps_every_digit_and_every_unread_field():
    dna = DNA.of([
        I("C_MUL", 0, const=1 / 3),                       # 0.333333 would lose digits
        I("C_ADD", 2, const=1e-06),                       # short where short is exact
        I("EXP", 3, in2=1, const=-0.0, dim=Fraction(1, 2), target=1),  # all unread
        I(CALL, 4, 2, const=2.5, dim=3, target=1, heads=2),
        I("CONV_1X1", 5, dim=1),
    ], [I("CONV_1X1", 0, dim=Fraction(3, 2)), I("SCALE", 2)])
    text = str(dna)
    assert "    h2 = C_MUL(h0, c=0.3333333333333333)\n" in text
    assert "    h3 = C_ADD(h2, c=1e-06)\n" in text
    assert "    h4 = EXP(h3)  # unread: in2=h1, c=-0, dim=(1/2)d, target=1\n" in text
    assert "    h5 = sub1(h4, h2, heads=2)  # unread: c=2.5, dim=3d\n" in text
    assert "    h2 = CONV_1X1(h0, dim=(3/2)d)\n" in text
    back = parse(text)
    assert back.to_bytes() == dna.to_bytes()
    assert "# unread" not in str(canonical(dna))


def test_hand_written_text_with_comments_and_free_layout():
    text = """
# A residual block, written by hand.
def main(h0, h1):   # the block
  h2 = sub1(h0)            # a call with one argument passes it twice
  h3 = CONV_1X1( h2 , dim = 4d )
  h4 = CONV_1X1(h3, dim=0.25d)
  h5 = ADD(h0, h4)
  return h5

def sub1(h0, h1):
    h2 = C_MUL(h0, c=-2)
    h3 = MAX(h0, h2)
    return h3
# hash 0123456789abcdef
"""
    dna = validate(parse(text))
    assert dna == DNA.of(
        [I(CALL, 0, 0, target=1), I("CONV_1X1", 2, dim=4), I("CONV_1X1", 3, dim=Fraction(1, 4)),
         I("ADD", 0, 4)],
        [I("C_MUL", 0, const=-2.0), I("MAX", 0, 2)])


def test_load_dna_reads_both_forms(tmp_path):
    dna = seeds.get("primer_ez")
    text_file, msgpack_file = tmp_path / "block.txt", tmp_path / "block.dna"
    text_file.write_text(str(dna))
    save_dna(dna, msgpack_file)
    assert is_text(text_file.read_bytes()) and not is_text(msgpack_file.read_bytes())
    assert load_dna(text_file) == load_dna(msgpack_file) == dna


def test_show_dna_reads_what_it_printed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["show-dna", "seeds:primer_ez"]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "p.txt").write_text(printed)            # show-dna seeds:primer_ez > p.txt
    assert main(["show-dna", "p.txt"]) == 0
    assert capsys.readouterr().out == printed
    assert main(["show-dna", "--prune", "p.txt"]) == 0


def test_a_search_config_takes_a_text_seed(tmp_path):
    from primer_search.search.config import load_config, seed_dnas

    path = tmp_path / "p.txt"
    path.write_text(str(seeds.get("transformer")).replace("dim=4d", "dim=2d"))
    cfg = load_config("tiny_cpu", [f'seeding.blocks=["{path}"]'])
    ((name, dna),) = seed_dnas(cfg)
    assert name == str(path)
    assert dna.main.instructions[5] == I("CONV_1X1", 6, dim=2)


GOOD = str(seeds.get("transformer")).splitlines()  # line 5 is 'h5 = ADD(h0, h4)'


def _with(line: int, new: str) -> str:
    lines = list(GOOD)
    lines[line - 1] = new
    return "\n".join(lines)


@pytest.mark.parametrize("text, message", [
    (_with(5, "    h5 = ADD(h0 h4)"),
     r"line 5: 'h5 = ADD\(h0 h4\)': expected ',' or '\)' after argument h0, got 'h4'"),
    (_with(5, "    h5 = ADD(h0)"), r"line 5: .*expected 2 inputs for ADD, got 1"),
    (_with(5, "    h7 = ADD(h0, h4)"), r"line 5: .*expected 'h5 = \.\.\.'"),
    (_with(5, "    h5 = ADD(h0, h9)"), r"line 5: .*in2 refers to h9, which is not an earlier"),
    (_with(5, "    h5 = ADDD(h0, h4)"), r"line 5: .*unknown op 'ADDD' \(did you mean ADD\?\)"),
    (_with(5, "    h5 = ADD(h0, h4, c=1)"), r"line 5: .*ADD reads no constant: expected no c="),
    (_with(4, "    h4 = CONV_1X1(h3)"), r"line 4: .*expected dim= in CONV_1X1\(\.\.\.\): "
                                         "CONV_1X1 reads a width"),
    (_with(4, "    h4 = CONV_1X1(h3, dim=4)"), r"line 4: .*expected a width such as d, 4d or "
                                                r"\(3/2\)d after 'dim='"),
    (_with(3, "    h3 = sub2(h2, heads=four)"), r"line 3: .*expected an integer after 'heads='"),
    (_with(3, "    h3 = sub9(h2, heads=4)"), r"line 3: .*calls sub9, which the text does not "
                                             "define"),
    (_with(3, "    h3 = sub2(h2, heads=3)"), r"line 3: .*heads=3, expected one of"),
    (_with(1, "def sub1(h0, h1):"), r"line 1: .*expected 'def main\(h0, h1\):'"),
    (_with(11, "    return h9"), r"line 11: 'return h9': expected 'return h10'"),
    (_with(11, ""), r"line 13: 'def sub1\(h0, h1\):': expected 'return h10' to end main"),
    ("\n".join(GOOD[:10]), r"line 10: .*the text ends inside main: expected 'return h10'"),
    ("# nothing here\n", r"no program found: expected 'def main\(h0, h1\):'"),
    (_with(4, "    h4 = CONV_1X1(h3, dim=d)  # unread: c=x"),
     r"line 4: .*expected a number after 'c='"),
    (_with(2, "    h2 = sub1(h0) $"), r"line 2: .*unexpected character '\$'"),
])
def test_parse_errors_name_the_line_and_what_was_expected(text, message):
    with pytest.raises(DNAError, match=message):
        parse(text)


def test_validation_errors_in_a_text_file_name_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("def main(h0, h1):\n    h2 = T_MAT_MUL(h0, h0)\n    h3 = SCALE(h2)\n"
                    "    return h3\n")
    with pytest.raises(DNAError, match=r"bad.txt: line 3: 'h3 = SCALE\(h2\)': .*sequence-width"):
        load_dna(path)
    path.write_text("def main(h0, h1):\n    h2 = RED_MEAN(h0)\n    return h2\n")
    with pytest.raises(DNAError, match=r"line 3: 'return h2': subprogram 0 \(main\) returns "
                                       "width 1"):
        load_dna(path)


def test_the_cli_shows_a_parse_error_as_one_line(tmp_path, capsys):
    path = tmp_path / "p.txt"
    path.write_text(_with(5, "    h5 = ADD(h0 h4)"))
    assert main(["show-dna", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"primer-search: error: {path}: line 5: 'h5 = ADD(h0 h4)': expected")


def test_damaged_text_raises_only_dna_error():
    """Deleting, inserting or replacing a character of a valid text raises nothing but
    DNAError."""
    rng = random.Random(0)
    texts = [str(seeds.get("primer_ez"))] + [str(random_dna(random.Random(s))) for s in (1, 2)]
    for _ in range(1500):
        text = rng.choice(texts)
        k = rng.randrange(len(text))
        ch = rng.choice("h0123456789(),=/#:.-+edcs \n")
        damaged = rng.choice([text[:k] + text[k + 1:], text[:k] + ch + text[k:],
                              text[:k] + ch + text[k + 1:]])
        try:
            validate(parse(damaged))
        except DNAError:
            pass
