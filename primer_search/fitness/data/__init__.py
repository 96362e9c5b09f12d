"""Corpora, tokenisation and batching for training the language models of a search.

Primer (So et al. 2021, arXiv 2109.08668) scores a candidate decoder block by training a
small language model around it and measuring how well it predicts held-out text; the
paper's benchmark is LM1B (Chelba et al. 2013, arXiv 1312.3005). This package turns a
corpus on disk into the two things the trainer needs: an infinite, seeded stream of
training batches and a fixed evaluation set, plus the counts (:class:`EvalInfo`) that
convert a summed evaluation loss into per-token, per-word and per-byte metrics (computed
by :func:`primer_search.fitness.metrics.metrics_from_eval`). Nothing here downloads anything.

This module is the public surface; one concern lives in each module under it:

* :mod:`~primer_search.fitness.data.config`: :class:`DataConfig`, :class:`DataError` and the
  shared constants;
* :mod:`~primer_search.fitness.data.tokenizers`: the word, byte and subword tokenisers, the
  word vocabulary and subword training, with the text normalisation rules;
* :mod:`~primer_search.fitness.data.cache`: the on-disk cache of tokenised corpora;
* :mod:`~primer_search.fitness.data.sources`: reading corpus files, cutting token streams into
  rows, the seeded training batch streams and the background batch producer;
* :mod:`~primer_search.fitness.data.dataset`: :class:`Dataset` and :class:`EvalInfo`;
* :mod:`~primer_search.fitness.data.corpora`: the ``ptb``, ``lm1b`` and ``text`` corpora and
  :func:`load_dataset`.
"""

from primer_search.fitness.data.cache import CACHE_VERSION, cache_root
from primer_search.fitness.data.config import (
    BYTE_EOS_ID,
    BYTE_VOCAB_SIZE,
    CORPORA,
    DEFAULT_TOKENIZER,
    EOS,
    EOS_ID,
    LM1B_HELDOUT_DIR,
    LM1B_ROOT_NAME,
    LM1B_SHUFFLE_TOKENS,
    LM1B_TRAIN_DIR,
    LM1B_VOCAB_WORDS,
    TEXT_VALID_FRACTION,
    TOKENIZERS,
    UNK,
    UNK_ID,
    DataConfig,
    DataError,
)
from primer_search.fitness.data.corpora import load_dataset
from primer_search.fitness.data.dataset import Dataset, EvalInfo
from primer_search.fitness.data.sources import Prefetcher

__all__ = [
    "BYTE_EOS_ID",
    "BYTE_VOCAB_SIZE",
    "CACHE_VERSION",
    "CORPORA",
    "DEFAULT_TOKENIZER",
    "EOS",
    "EOS_ID",
    "LM1B_HELDOUT_DIR",
    "LM1B_ROOT_NAME",
    "LM1B_SHUFFLE_TOKENS",
    "LM1B_TRAIN_DIR",
    "LM1B_VOCAB_WORDS",
    "TEXT_VALID_FRACTION",
    "TOKENIZERS",
    "cache_root",
    "UNK",
    "UNK_ID",
    "DataConfig",
    "DataError",
    "Dataset",
    "EvalInfo",
    "Prefetcher",
    "load_dataset",
]
