"""What :func:`~primer_search.fitness.data.load_dataset` returns: a :class:`Dataset` and
its :class:`EvalInfo`.

A :class:`Dataset` is the trainer's whole view of a corpus: an infinite, seeded stream of
training batches (from a source in :mod:`primer_search.fitness.data.sources`) and a fixed
evaluation set. The evaluation set is the first ``eval_tokens`` target tokens of the
validation stream (rounded down to whole rows of ``seq_len``, or all of the split that
fits if it is shorter); no padding is ever used, so every target counts.
:class:`EvalInfo` counts the words and bytes of exactly the text those targets cover, so
per-word perplexity and bits per byte are comparable between the two tokenisers.

:class:`EvalInfo` lives here, with the data, rather than with the metrics in
:mod:`primer_search.fitness.metrics`: it is computed from the validation split while the dataset
is built, and keeping it here lets the metrics depend on the data package and never the
other way round (the data package imports nothing of the model, training or evaluation).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterator

import numpy as np

from primer_search.fitness.data.config import DataConfig, DataError
from primer_search.fitness.data.sources import ArraySource, ShardSource, windows
from primer_search.fitness.data.tokenizers import Tokenizer


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

    def __init__(self, *, config: DataConfig, tokenizer: Tokenizer, train: ArraySource |
                 ShardSource, valid: tuple[np.ndarray, np.ndarray, np.ndarray],
                 train_tokens: int | None, description: str):
        self.config = config
        self.vocab_size = tokenizer.vocab_size
        self.vocab = tokenizer.vocab
        self.eos_id = tokenizer.eos_id
        self.tokenizer = tokenizer
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
        self._eval_rows = windows(np.asarray(stream[: rows * L + 1]), L)[0]

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

    def prepare(self, progress: Callable[[int, int], None] | None = None) -> int | None:
        """Tokenise the whole training split into the cache now (a streamed LM1B: every
        shard), so that no training run waits for it; returns its tokens. In-memory corpora
        are tokenised when loaded, and this returns their size."""
        if isinstance(self._train, ShardSource):
            return self._train.prepare(progress)
        return self.train_tokens

    def eval_batches(self) -> list[np.ndarray]:
        """The fixed evaluation set from the validation split: int32 [batch_size, seq_len+1]
        arrays whose target tokens total exactly eval_info.tokens (last batch may be smaller)."""
        B = self.batch_size
        return [self._eval_rows[i:i + B].copy() for i in range(0, len(self._eval_rows), B)]

    def __repr__(self) -> str:
        return (f"Dataset({self._description}, vocab_size={self.vocab_size}, "
                f"seq_len={self.seq_len}, batch_size={self.batch_size}, "
                f"train_tokens={self.train_tokens}, eval_info={self.eval_info})")
