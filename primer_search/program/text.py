"""Programs as text: read back the code that ``str(dna)`` prints.

A program can be written by hand, or edited from what ``primer-search show-dna`` prints,
and loaded wherever a DNA file is (``load_dna``, ``--dna FILE``, ``seeding.blocks=["FILE"]``):
:func:`primer_search.program.dna.read_dna` tells the two apart by content (a msgpack DNA
is not UTF-8 text). The text is exactly the program: ``parse(str(dna)) == dna``, field
for field, so the two forms serialise to the same bytes.

The form, one line at a time (indentation and blank lines are free)::

    def main(h0, h1):                    # subprograms in order: main, sub1, sub2, ...
        h2 = sub1(h0)                    # a call; both arguments if they differ
        h3 = sub2(h2, heads=4)           # a multi-head call
        h4 = CONV_1X1(h3, dim=d)         # widths: d, 4d, (3/2)d, (1/16)d
        h5 = ADD(h0, h4)                 # instruction i writes h{i+2}
        h6 = C_ADD(h5, c=1e-06)          # a constant, as many digits as it has
        h7 = EXP(h6)  # unread: in2=h3, c=0.5
        return h7                        # a subprogram returns its last state

    def sub1(h0, h1):
        ...

Each op is written with the fields it reads (an op from ``primer-search ops`` with its
inputs, then ``c=`` if it reads a constant and ``dim=`` if it reads a width; a call of
``subN`` with one or two arguments and optional ``heads=``). A ``# unread:`` note keeps
the fields an instruction carries but does not read (``in2=hK``, ``c=``, ``dim=``,
``target=``): they change nothing the block computes, and the printer writes them only
when they differ from their defaults, so that the text is the exact program. Any other
``#`` comment is ignored, such as the ``# hash ...`` line ``show-dna`` ends with.

A mistake raises :class:`~primer_search.program.dna.DNAError` naming the line, its text
and what was expected, e.g. ``line 7: 'h5 = ADD(h0 h4)': expected ',' or ')' after
argument h0``; so do the structure checks of :class:`~primer_search.program.dna.DNA` and
a ``check`` such as :func:`primer_search.program.validate.validate`, located at the line
of the instruction they name.

This module imports no JAX until a program is parsed: the op vocabulary (which says what
each op reads) is imported then, as printing does.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from fractions import Fraction

from primer_search.program.dna import CALL, DNA, DNAError, Instruction, Subprogram

__all__ = ["is_text", "parse"]

_DEF = re.compile(r"def\s+(\w+)\s*\(\s*h0\s*,\s*h1\s*\)\s*:")
_RETURN = re.compile(r"return\b\s*(.*)")
_ASSIGN = re.compile(r"(\w+)\s*=(?!=)\s*(.*)")
_STATE = re.compile(r"h(\d+)", re.A)
_CALLEE = re.compile(r"sub(\d+)", re.A)
_TOKEN = re.compile(r"""\s*(?:
    (?P<num>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),=/])
  | (?P<bad>\S))""", re.X | re.A)
# Unread fields, their names in a note and their defaults (the Instruction defaults).
_UNREAD_KEYS = ("in2", "c", "dim", "target")


def is_text(data: bytes) -> bool:
    """Whether ``data`` reads as a program in text (UTF-8, printable): a msgpack DNA
    starts with a byte that is not UTF-8 text, so the two never meet."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\n\r\f\v" for ch in text)


class _LineError(Exception):
    """What one line got wrong; :func:`parse` adds the line's number and text."""


def parse(text: str, check: Callable[[DNA], object] | None = None) -> DNA:
    """The DNA written in ``text`` (see the module doc); ``check`` (for example
    ``validate``) runs on it, and a :class:`DNAError` it raises about an instruction is
    given that instruction's line. Every problem raises :class:`DNAError`."""
    return _Parser(text).run(check)


class _Parser:
    def __init__(self, text: str):
        self.lines = text.removeprefix("\ufeff").splitlines()
        self.subs: list[list[Instruction]] = []
        # (subprogram, instruction) -> line index; (subprogram, None) -> its return line.
        self.where: dict[tuple[int, int | None], int] = {}

    # ---- driving ------------------------------------------------------------------

    def run(self, check) -> DNA:
        current: list[Instruction] | None = None  # the open subprogram, if any
        last = 0
        for n, line in enumerate(self.lines):
            code, note = _split_comment(line)
            if not code:
                continue
            last = n
            try:
                if current is None:
                    current = self._open(code)
                elif (m := _RETURN.fullmatch(code)) is not None:
                    self._close(m.group(1), current, n)
                    current = None
                else:
                    current.append(self._instruction(code, note, len(current)))
                    self.where[(len(self.subs) - 1, len(current) - 1)] = n
            except _LineError as e:
                raise self._error(n, str(e)) from None
        if not self.subs:
            raise DNAError("no program found: expected 'def main(h0, h1):' and its "
                           "instructions (see `primer-search show-dna seeds:transformer`)")
        if current is not None:
            raise self._error(last, f"the text ends inside {_name(len(self.subs) - 1)}: "
                              f"expected 'return h{len(current) + 1}' after it")
        self._check_calls()
        try:
            dna = DNA(tuple(Subprogram(tuple(s)) for s in self.subs))
            if check is not None:
                check(dna)
        except DNAError as e:
            raise self._locate(e) from None
        return dna

    def _check_calls(self) -> None:
        """Every call names a later subprogram of the text (no cycles)."""
        for s, sub in enumerate(self.subs):
            for i, ins in enumerate(sub):
                if not ins.is_call or s < ins.target < len(self.subs):
                    continue
                n = self.where[(s, i)]
                if ins.target >= len(self.subs):
                    have = ", ".join(_name(k) for k in range(len(self.subs)))
                    raise self._error(n, f"calls sub{ins.target}, which the text does not "
                                         f"define (it defines {have})")
                raise self._error(n, f"{_name(s)} calls {_name(ins.target)}: a subprogram "
                                     "may only call later ones (a higher number), which keeps "
                                     "the call graph free of cycles")

    def _error(self, n: int, message: str) -> DNAError:
        return DNAError(f"line {n + 1}: {self.lines[n].strip()!r}: {message}")

    def _locate(self, e: DNAError) -> DNAError:
        """``e`` at the line of the instruction (or the subprogram) its message names."""
        message = str(e)
        m = re.match(r"subprogram (\d+)(?:, instruction (\d+))?", message)
        if m is None:
            return e
        key = (int(m.group(1)), int(m.group(2)) if m.group(2) is not None else None)
        if key not in self.where:
            return e
        if key[1] is None:  # about a whole subprogram: its return line
            return self._error(self.where[key], message)
        return self._error(self.where[key], _after_location(message, m.end()))

    # ---- lines ------------------------------------------------------------------------

    def _open(self, code: str) -> list[Instruction]:
        s = len(self.subs)
        expected = f"'def {_name(s)}(h0, h1):'"
        m = _DEF.fullmatch(code)
        if m is None:
            raise _LineError(f"expected {expected}: a program starts with main" if s == 0
                             else f"expected {expected} or the end of the text")
        if m.group(1) != _name(s):
            raise _LineError(f"expected {expected}: subprograms are numbered in order "
                             "(main, sub1, sub2, ...)")
        self.subs.append([])
        return self.subs[-1]

    def _close(self, rest: str, current: list[Instruction], n: int) -> None:
        last = f"h{len(current) + 1}"
        if rest.strip() != last:
            raise _LineError(f"expected 'return {last}': a subprogram returns its last state")
        self.where[(len(self.subs) - 1, None)] = n

    def _instruction(self, code: str, note: str | None, i: int) -> Instruction:
        target = f"h{i + 2}"
        if _DEF.fullmatch(code):
            raise _LineError(f"expected 'return h{i + 1}' to end {_name(len(self.subs) - 1)} "
                             "before the next subprogram")
        m = _ASSIGN.fullmatch(code)
        if m is None:
            raise _LineError(f"expected an instruction '{target} = OP(...)' or "
                             f"'return h{i + 1}'")
        if m.group(1) != target:
            raise _LineError(f"expected '{target} = ...' (instruction {i} of a subprogram "
                             f"writes h{i + 2}; states are numbered in order), "
                             f"got '{m.group(1)} = ...'")
        tokens = _Tokens(m.group(2))
        op = tokens.take("name", f"an op (see `primer-search ops`) or a call subN(...) "
                                 f"after '{target} ='")
        callee = _CALLEE.fullmatch(op)
        if callee is None:
            _check_op(op)
        tokens.take("(", f"'(' after {op}")
        inputs, keywords = _arguments(tokens)
        unread = _note(note) if note is not None else {}
        if callee is not None:
            return _call(int(callee.group(1)), op, inputs, keywords, unread)
        return _primitive(op, inputs, keywords, unread)


# ---- the pieces of an instruction ------------------------------------------------------

def _name(s: int) -> str:
    return "main" if s == 0 else f"sub{s}"


def _split_comment(line: str) -> tuple[str, str | None]:
    """(code, the text of an ``# unread:`` note or None); other comments are dropped."""
    code, hash_, comment = line.partition("#")
    note = None
    if hash_ and comment.strip().startswith("unread:"):
        note = comment.strip()[len("unread:"):]
    return code.strip(), note


def _after_location(message: str, start: int) -> str:
    """The rest of a message after its ``subprogram S, instruction I (TEXT): `` prefix."""
    rest = message[start:]
    if rest.startswith(" ("):  # skip the parenthesised instruction, parentheses balanced
        depth = 0
        for k, ch in enumerate(rest):
            depth += (ch == "(") - (ch == ")")
            if depth == 0 and ch == ")":
                rest = rest[k + 1:]
                break
    return rest.removeprefix(":").strip() or message


class _Tokens:
    """The tokens of an instruction's right-hand side, taken one at a time."""

    def __init__(self, text: str):
        self.items: list[tuple[str, str]] = []
        for m in _TOKEN.finditer(text):
            kind = m.lastgroup
            value = m.group(kind)
            if kind == "bad":
                raise _LineError(f"unexpected character {value!r}")
            self.items.append((value if kind == "punct" else kind, value))
        self.k = 0
        self.previous = ""

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.k] if self.k < len(self.items) else None

    def take(self, kind: str, expected: str) -> str:
        token = self.peek()
        if token is None or token[0] != kind:
            got = f", got {token[1]!r}" if token else ""
            raise _LineError(f"expected {expected}{got}")
        self.k += 1
        self.previous = token[1]
        return token[1]

    def at_end(self) -> bool:
        return self.k == len(self.items)


def _arguments(tokens: _Tokens) -> tuple[list[int], dict[str, object]]:
    """``h1, h2, key=value, ...)``: the input states and the keyword arguments."""
    inputs: list[int] = []
    keywords: dict[str, object] = {}
    if tokens.peek() == (")", ")"):
        raise _LineError("expected an argument (a state such as h0) after '('")
    while True:
        name = tokens.take("name", "an argument (a state such as h0, or c=, dim=, heads=)"
                           f" after {tokens.previous!r}")
        if tokens.peek() is not None and tokens.peek()[0] == "=":
            tokens.take("=", "'='")
            if name in keywords:
                raise _LineError(f"{name}= is given twice")
            keywords[name] = _value(tokens, name)
            shown = f"{name}={_shown(keywords[name])}"
        else:
            m = _STATE.fullmatch(name)
            if m is None:
                raise _LineError(f"expected a state such as h0, got {name!r}")
            if keywords:
                raise _LineError(f"input {name} after a keyword argument: write the inputs "
                                 "first")
            inputs.append(int(m.group(1)))
            shown = name
        token = tokens.peek()
        if token is not None and token[0] == ",":
            tokens.take(",", "','")
            continue
        if token is not None and token[0] == ")":
            tokens.take(")", "')'")
            break
        got = f", got {token[1]!r}" if token else ""
        raise _LineError(f"expected ',' or ')' after argument {shown}{got}")
    if not tokens.at_end():
        raise _LineError(f"unexpected {tokens.peek()[1]!r} after ')'")
    return inputs, keywords


def _shown(value) -> str:
    if isinstance(value, Fraction):
        return "d" if value == 1 else f"{value}d" if value.denominator == 1 else f"({value})d"
    return str(value)


def _value(tokens: _Tokens, key: str):
    """The value after ``key=``: a number (c), a width (dim), an integer (heads, target)
    or a state (in2)."""
    if key == "c":
        text = tokens.take("num", "a number after 'c=', such as 0.5 or 1e-06")
        value = float(text)
        if not math.isfinite(value):
            raise _LineError(f"c={text} is not a finite number")
        return value
    if key == "dim":
        return _width(tokens)
    if key in ("heads", "target"):
        text = tokens.take("num", f"an integer after '{key}='")
        if not text.isdigit():
            raise _LineError(f"expected an integer after '{key}=', got {text!r}")
        return int(text)
    if key == "in2":
        text = tokens.take("name", "a state such as h0 after 'in2='")
        m = _STATE.fullmatch(text)
        if m is None:
            raise _LineError(f"expected a state such as h0 after 'in2=', got {text!r}")
        return int(m.group(1))
    raise _LineError(f"unknown argument {key}=: expected c=, dim= or heads=")


def _width(tokens: _Tokens) -> Fraction:
    """``d``, ``4d``, ``0.5d`` or ``(3/2)d``: a width relative to the unit."""
    expected = "a width such as d, 4d or (3/2)d after 'dim='"
    token = tokens.peek()
    if token == ("name", "d"):
        tokens.take("name", expected)
        return Fraction(1)
    if token is not None and token[0] == "(":
        tokens.take("(", expected)
        num = tokens.take("num", expected)
        den = "1"
        if tokens.peek() is not None and tokens.peek()[0] == "/":
            tokens.take("/", expected)
            den = tokens.take("num", expected)
        tokens.take(")", f"')' to close the width ({num}/{den}")
    else:
        num, den = tokens.take("num", expected), "1"
    unit = tokens.take("name", expected)
    if unit != "d":
        raise _LineError(f"expected {expected}, got {num}{unit}")
    try:
        value = Fraction(num) / Fraction(den)
    except (ValueError, ZeroDivisionError):
        raise _LineError(f"expected {expected}, got ({num}/{den})d") from None
    return value


def _check_op(op: str) -> None:
    import primitives  # the vocabulary: which ops exist and what they read

    if primitives.is_primitive(op):
        return
    names = primitives.names()
    close = difflib.get_close_matches(op.upper(), names, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise _LineError(f"unknown op {op!r}{hint}: expected an op of the vocabulary "
                     "(`primer-search ops` lists them) or a call subN(...)")


def _note(text: str) -> dict[str, object]:
    """The fields of an ``# unread:`` note, ``in2=h3, c=0.5, dim=(1/2)d, target=2``."""
    tokens = _Tokens(text)
    fields: dict[str, object] = {}
    while not tokens.at_end():
        key = tokens.take("name", f"a field ({', '.join(k + '=' for k in _UNREAD_KEYS)}) "
                          "in the '# unread:' note")
        if key not in _UNREAD_KEYS:
            raise _LineError(f"unknown field {key}= in the '# unread:' note: expected "
                             f"{', '.join(k + '=' for k in _UNREAD_KEYS)}")
        tokens.take("=", f"'=' after {key} in the '# unread:' note")
        if key in fields:
            raise _LineError(f"{key}= is given twice in the '# unread:' note")
        fields[key] = _value(tokens, key)
        if not tokens.at_end():
            tokens.take(",", f"',' or the end of the note after {key}=")
    return fields


def _call(target: int, name: str, inputs: list[int], keywords: dict, unread: dict) -> Instruction:
    if len(inputs) not in (1, 2):
        raise _LineError(f"expected 1 or 2 inputs for a call of {name}, got {len(inputs)}")
    unknown = sorted(set(keywords) - {"heads"})
    if unknown:
        raise _LineError(f"a call takes heads= only, got {unknown[0]}= (a call reads no "
                         "constant or width)")
    for key in ("in2", "target"):
        if key in unread:
            raise _LineError(f"{key}= in the '# unread:' note: a call reads its inputs and "
                             "its subprogram, write them in the call")
    return Instruction(CALL, inputs[0], inputs[-1], unread.get("c", 0.0),
                       unread.get("dim", Fraction(1)), target, keywords.get("heads", 1))


def _primitive(op: str, inputs: list[int], keywords: dict, unread: dict) -> Instruction:
    import primitives

    prim = primitives.get(op)
    reads = prim.reads()
    if len(inputs) != prim.arity:
        raise _LineError(f"expected {prim.arity} input{'s' if prim.arity > 1 else ''} for "
                         f"{op}, got {len(inputs)}")
    if "heads" in keywords:
        raise _LineError(f"heads= is for calls of subprograms (subN(...)), not for {op}")
    for key, field, what in (("c", "const", "a constant"), ("dim", "dim", "a width")):
        if field in reads and key not in keywords:
            raise _LineError(f"expected {key}= in {op}(...): {op} reads {what}")
        if field not in reads and key in keywords:
            raise _LineError(f"{op} reads no {what.split()[-1]}: expected no {key}= (keep an "
                             f"unread field in a '# unread:' note)")
        if field in reads and key in unread:
            raise _LineError(f"{key}= in the '# unread:' note, but {op} reads it: write it "
                             "in the argument list")
    if "in2" in reads and "in2" in unread:
        raise _LineError(f"in2= in the '# unread:' note, but {op} reads two inputs")
    return Instruction(op, inputs[0], inputs[1] if prim.arity == 2 else unread.get("in2", 0),
                       keywords.get("c", unread.get("c", 0.0)),
                       keywords.get("dim", unread.get("dim", Fraction(1))),
                       unread.get("target", 0))
