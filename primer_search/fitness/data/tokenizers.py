"""Tokenisers: lines of pre-tokenised text to an int32 token stream, and the word vocabulary.

Text normalisation, shared by both tokenisers: a line is split on whitespace
(``str.split()``, the corpora are pre-tokenised); lines with no words are skipped; each
sentence is its words joined by single spaces followed by a sentence end. Sentences are
concatenated into one token stream per split.

Tokenisers (``DataConfig.tokenizer``):

* ``"word"`` (:class:`WordTokenizer`): id 0 is ``<eos>``, id 1 ``<unk>``, then the most
  frequent words of the training split (ties broken by code-point order of the word),
  capped so the vocabulary including the two specials has at most ``vocab_size`` entries
  (:func:`build_word_vocab`). Unknown words map to ``<unk>``; a literal ``<unk>`` /
  ``<eos>`` in the text maps to that special.
* ``"byte"`` (:class:`ByteTokenizer`): the UTF-8 bytes of the normalised sentence (ids
  0-255) and id 256 for the sentence end (vocabulary 257; ``vocab_size`` is ignored).
* ``"subword"`` (:class:`SubwordTokenizer`): a SentencePiece unigram model (Kudo 2018;
  the tokeniser family of T5, on which Primer's released code is built) of at most
  ``vocab_size`` pieces trained on the training split (:func:`train_subword`). Id 0 is
  ``<eos>``, id 1 the model's unknown piece (never produced: a character the model has
  no piece for is written as its UTF-8 bytes, 256 byte pieces ``<0x00>``..``<0xFF>``,
  "byte fallback"), then the piece ``<unk>`` (so the literal ``<unk>`` of pre-processed
  corpora such as PTB is one piece), then the bytes and the learned pieces. A piece that
  starts a word carries the word's leading space as ``▁``; decoding is exact.
  Chosen over Hugging Face ``tokenizers`` by ``benchmarks/tokenizer_choice.py``: on PTB at
  8K pieces it encodes 2.5-4x faster, trains in about a second, decodes exactly, falls back
  to bytes instead of ``<unk>`` and depends on nothing else.

Besides the stream, :meth:`Tokenizer.annotate` gives per token the bytes of normalised text
it covers and whether it ends a word; the evaluation set sums these over its targets so
that per-word perplexity and bits per byte are comparable between the two tokenisers.

The tokenisers know nothing of files, caches or batches; they are internal to the
``primer_search.fitness.data`` package (its ``__init__`` is the public surface).
"""

from __future__ import annotations

import collections
import hashlib
import io
from collections.abc import Iterable, Sequence

import numpy as np

from primer_search.fitness.data.config import (
    BYTE_EOS_ID,
    BYTE_VOCAB_SIZE,
    EOS,
    EOS_ID,
    UNK,
    UNK_ID,
    DataError,
)


class Tokenizer:
    """Encodes lines of text into a token stream; the module docstring gives the rules."""

    name: str
    vocab_size: int
    eos_id: int
    vocab: tuple[str, ...] | None

    def encode(self, lines: Iterable[str]) -> np.ndarray:
        """int32 token stream of the sentences in ``lines`` (each followed by eos)."""
        raise NotImplementedError

    def annotate(self, lines: Iterable[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token stream plus, per token, the bytes it covers and whether it ends a word."""
        raise NotImplementedError

    def line_tokens(self, line: str) -> int:
        """Number of tokens ``line`` encodes to (0 for a line with no words)."""
        raise NotImplementedError

    def key(self) -> dict:
        """Identity of the tokeniser for cache keys."""
        raise NotImplementedError


class WordTokenizer(Tokenizer):
    """Whitespace words looked up in a fixed vocabulary that starts ``<eos>``, ``<unk>``."""

    name = "word"

    def __init__(self, vocab: Sequence[str]):
        if tuple(vocab[:2]) != (EOS, UNK):
            raise DataError(f"a word vocabulary starts with {EOS!r}, {UNK!r}, got "
                            f"{tuple(vocab[:2])!r}")
        self.vocab = tuple(vocab)
        self.vocab_size = len(self.vocab)
        self.eos_id = EOS_ID
        self._index = {w: i for i, w in enumerate(self.vocab)}
        self._digest = hashlib.sha256("\n".join(self.vocab).encode("utf-8")).hexdigest()

    def encode(self, lines: Iterable[str]) -> np.ndarray:
        return word_encode(self._index, lines)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``: words joined by spaces, each sentence end a newline."""
        return word_decode(self.vocab, ids)

    def annotate(self, lines: Iterable[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        get, ids, nbytes = self._index.get, [], []
        for line in lines:
            words = line.split()
            if words:
                ids.extend([get(w, UNK_ID) for w in words])
                ids.append(EOS_ID)
                nbytes.extend([len(w.encode("utf-8")) + 1 for w in words])
                nbytes[-len(words)] -= 1  # no space before a sentence's first word
                nbytes.append(1)
        stream = np.asarray(ids, dtype=np.int32)
        return stream, np.asarray(nbytes, dtype=np.int32), np.ones(stream.size, np.int8)

    def line_tokens(self, line: str) -> int:
        n = len(line.split())
        return n + 1 if n else 0

    def key(self) -> dict:
        return {"tokenizer": "word", "vocab_sha256": self._digest}


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes of the normalised sentences, with id 256 for each sentence end."""

    name = "byte"
    vocab_size = BYTE_VOCAB_SIZE
    eos_id = BYTE_EOS_ID
    vocab = None

    def encode(self, lines: Iterable[str]) -> np.ndarray:
        return byte_encode(lines)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``: the bytes as UTF-8, each sentence end a newline."""
        return byte_decode(ids)

    def annotate(self, lines: Iterable[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stream = self.encode(lines)
        in_word = (stream != 0x20) & (stream != BYTE_EOS_ID)
        after = np.append(stream[1:], BYTE_EOS_ID)
        ends = (in_word & ((after == 0x20) | (after == BYTE_EOS_ID))) | (stream == BYTE_EOS_ID)
        return stream, np.ones(stream.size, np.int32), ends.astype(np.int8)

    def line_tokens(self, line: str) -> int:
        words = line.split()
        return len(" ".join(words).encode("utf-8")) + 1 if words else 0

    def key(self) -> dict:
        return {"tokenizer": "byte"}


class SubwordTokenizer(Tokenizer):
    """SentencePiece pieces of the normalised sentences, with id 0 for each sentence end."""

    name = "subword"
    eos_id = EOS_ID

    def __init__(self, model: bytes):
        import sentencepiece

        self.model = bytes(model)
        try:
            self._sp = sentencepiece.SentencePieceProcessor(model_proto=self.model)
        except RuntimeError as e:
            raise DataError(f"not a SentencePiece model ({e})") from e
        sp = self._sp
        self.vocab_size = sp.get_piece_size()
        if sp.id_to_piece(EOS_ID) != EOS or not sp.is_control(EOS_ID):
            raise DataError(f"a subword model has {EOS!r} as control piece {EOS_ID}, got "
                            f"{sp.id_to_piece(EOS_ID)!r}")
        self.vocab = tuple(sp.id_to_piece(i) for i in range(self.vocab_size))
        # Per id: the UTF-8 bytes of text it stands for (its ``▁`` a space) and whether it
        # starts a word. The sentence end stands for one byte, like the byte tokeniser's.
        self._bytes = np.array([1 if sp.is_byte(i) else len(p.replace("▁", " ").encode())
                                for i, p in enumerate(self.vocab)], np.int32)
        self._bytes[EOS_ID] = 1
        self._starts_word = np.array([p.startswith("▁") for p in self.vocab], bool)
        self._digest = hashlib.sha256(self.model).hexdigest()

    def encode(self, lines: Iterable[str]) -> np.ndarray:
        return subword_encode(self._sp, lines)

    def annotate(self, lines: Iterable[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stream = self.encode(lines)
        nbytes = self._bytes[stream]
        eos = stream == EOS_ID
        first = np.concatenate([[True], eos[:-1]])  # a sentence's first token
        nbytes[first & self._starts_word[stream]] -= 1  # the dummy space before its first word
        after = np.append(stream[1:], EOS_ID)
        ends = eos | self._starts_word[after] | (after == EOS_ID)
        return stream, nbytes, ends.astype(np.int8)

    def line_tokens(self, line: str) -> int:
        words = line.split()
        return len(self._sp.encode(" ".join(words))) + 1 if words else 0

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``: sentences as normalised, each sentence end a newline."""
        return subword_decode(self._sp, ids)

    def key(self) -> dict:
        return {"tokenizer": "subword", "model_sha256": self._digest}


# ---- the tokenisers' encoding and decoding, as plain functions --------------------------
# The exported block's ``load()`` (:mod:`primer_search.export_runtime`) runs these same
# functions: export copies them, so they use only numpy, literal constants and their
# arguments (a SentencePiece processor for subwords), and their annotations name no
# typing classes. ``lines``: an iterable of lines of text; ``ids``: of token ids.

def word_encode(index: dict[str, int], lines) -> np.ndarray:
    """The word tokeniser's stream: each word's id in ``index`` (``<unk>``'s when it has
    none), a sentence end after each line with words."""
    get, ids = index.get, []
    for line in lines:
        words = line.split()
        if words:
            ids.extend([get(w, UNK_ID) for w in words])
            ids.append(EOS_ID)
    return np.asarray(ids, dtype=np.int32)


def word_decode(vocab, ids) -> str:
    """Words joined by spaces, each sentence end a newline."""
    return " ".join(vocab[int(i)] for i in ids).replace(f" {EOS} ", "\n").replace(EOS, "\n")


def byte_encode(lines) -> np.ndarray:
    """The byte tokeniser's stream: the normalised sentences' UTF-8 bytes, each followed by
    the sentence end."""
    text = "".join(" ".join(words) + "\n" for words in map(str.split, lines) if words)
    stream = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)
    stream[stream == 0x0A] = BYTE_EOS_ID  # normalised sentences hold no other newline
    return stream


def byte_decode(ids) -> str:
    """The bytes as UTF-8 (an invalid sequence as U+FFFD), each sentence end a newline."""
    out = bytes(int(i) if i < BYTE_EOS_ID else 0x0A for i in ids)
    return out.decode("utf-8", errors="replace")


def subword_encode(sp, lines) -> np.ndarray:
    """The subword tokeniser's stream: each normalised sentence's pieces by the
    SentencePiece processor ``sp``, then the sentence end."""
    sentences = [" ".join(words) for words in map(str.split, lines) if words]
    pieces = sp.encode(sentences, num_threads=SUBWORD_ENCODE_THREADS)
    return np.fromiter((t for p in pieces for t in p + [EOS_ID]),
                       np.int32, count=sum(map(len, pieces)) + len(pieces))


def subword_decode(sp, ids) -> str:
    """Each sentence's pieces decoded by ``sp``, each sentence end a newline."""
    out, sentence = [], []
    for t in map(int, ids):
        if t == EOS_ID:
            out.append(sp.decode(sentence) + "\n")
            sentence = []
        else:
            sentence.append(t)
    return "".join(out) + (sp.decode(sentence) if sentence else "")


# Threads SentencePiece trains with: fixed, because its result depends on the count.
SUBWORD_TRAIN_THREADS = 4
# Threads SentencePiece encodes a batch of sentences with (the result does not depend on it).
SUBWORD_ENCODE_THREADS = 4
# Sentences longer than this (in bytes) are left out of subword training.
SUBWORD_MAX_SENTENCE_BYTES = 1 << 14


def train_subword(lines: Iterable[str], vocab_size: int) -> bytes:
    """A SentencePiece unigram model (serialised) of at most ``vocab_size`` pieces.

    Trained on the normalised sentences of ``lines``; deterministic for the same text and
    size. A small corpus gets fewer pieces than asked (no more than it can fill).
    """
    import sentencepiece

    sentences = (" ".join(words) for words in map(str.split, lines) if words)
    out = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=sentences, model_writer=out, vocab_size=vocab_size,
            model_type="unigram", byte_fallback=True, character_coverage=0.9995,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=True, split_digits=False, eos_id=EOS_ID, eos_piece=EOS,
            unk_id=UNK_ID, unk_piece="<unknown>", bos_id=-1, pad_id=-1,
            user_defined_symbols=[UNK], hard_vocab_limit=False,
            max_sentence_length=SUBWORD_MAX_SENTENCE_BYTES,
            num_threads=SUBWORD_TRAIN_THREADS, minloglevel=2)
    except RuntimeError as e:
        raise DataError(f"training a subword vocabulary of {vocab_size} pieces failed: {e}") \
            from e
    return out.getvalue()


def build_word_vocab(lines: Iterable[str], vocab_size: int, max_words: int | None = None,
                     counted: list[int] | None = None) -> list[str]:
    """``<eos>``, ``<unk>``, then the most frequent words (ties by code point), capped.

    With ``max_words``, counting stops after the line at which that many words were seen.
    The number of words counted is appended to ``counted`` when given.
    """
    counts: collections.Counter[str] = collections.Counter()
    seen = 0
    for line in lines:
        words = line.split()
        counts.update(words)
        seen += len(words)
        if max_words is not None and seen >= max_words:
            break
    if counted is not None:
        counted.append(seen)
    counts.pop(EOS, None)
    counts.pop(UNK, None)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [EOS, UNK] + [w for w, _ in ranked[: vocab_size - 2]]
