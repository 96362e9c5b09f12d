"""The data settings (:class:`DataConfig`), the error they raise and the shared constants.

This module is the bottom of the ``primer_search.fitness.data`` package: every other module of
it imports from here and it imports from none of them, so a caller that only needs to
describe a corpus (the command line, a search config) does not pull in tokenisers,
caches or readers. The constants that more than one module uses (special tokens and
their ids, the LM1B folder names, the streaming sizes) live here for the same reason.
"""

from __future__ import annotations

import dataclasses

CORPORA = ("ptb", "lm1b", "text")
TOKENIZERS = ("word", "byte", "subword")
# The tokeniser a corpus gets when the config names none.
DEFAULT_TOKENIZER = {"ptb": "word", "text": "word", "lm1b": "subword"}
# Fewest pieces a subword vocabulary may ask for: the 256 byte pieces, the specials and
# room for the characters and some words.
MIN_SUBWORD_VOCAB = 384
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
LM1B_ROOT_NAME = "1-billion-word-language-modeling-benchmark-r13output"
LM1B_TRAIN_DIR = "training-monolingual.tokenized.shuffled"
LM1B_HELDOUT_DIR = "heldout-monolingual.tokenized.shuffled"


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
    # "word" (whitespace tokens, frequency-ranked vocabulary), "byte" (UTF-8 bytes) or
    # "subword" (SentencePiece unigram trained on the training split); None picks the
    # corpus's default (DEFAULT_TOKENIZER: subword for lm1b, word otherwise).
    tokenizer: str | None = None
    # Cap on the word or subword vocabulary, specials included; ignored for "byte".
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
        if self.tokenizer is None:
            object.__setattr__(self, "tokenizer", DEFAULT_TOKENIZER[self.corpus])
        if self.tokenizer not in TOKENIZERS:
            raise DataError(f"unknown tokenizer {self.tokenizer!r}; expected one of "
                            f"{', '.join(map(repr, TOKENIZERS))}")
        if self.corpus == "ptb" and self.path is not None:
            raise DataError(f"corpus 'ptb' is embedded in the treebank package and takes no "
                            f"path, got path={self.path!r}")
        if self.corpus != "ptb" and (self.path is None or str(self.path) == ""):
            raise DataError(f"corpus {self.corpus!r} needs a path, got path={self.path!r}")
        _check_int("vocab_size", self.vocab_size, 2)
        if self.tokenizer == "subword":
            _check_int("vocab_size", self.vocab_size, MIN_SUBWORD_VOCAB,
                       f"a subword vocabulary holds the 256 bytes and at least "
                       f"{MIN_SUBWORD_VOCAB - 256} more pieces")
        _check_int("seq_len", self.seq_len, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("eval_tokens", self.eval_tokens, self.seq_len,
                   "at least seq_len, so that one evaluation row fits")
        if self.max_train_tokens is not None:
            _check_int("max_train_tokens", self.max_train_tokens, self.seq_len + 1,
                       "None or at least seq_len + 1")


def _check_int(name: str, value: object, low: int, expected: str | None = None) -> None:
    """Raise :class:`DataError` unless ``value`` is an int (not a bool) of at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DataError(f"{name} must be an integer >= {low} "
                        f"({expected or 'got a bad value'}), got {value!r}")
