"""Reading corpus files and turning token streams into training batches.

Two layers, both below :class:`~primer_search.fitness.data.dataset.Dataset`:

* Reading text: :func:`read_lines` streams a UTF-8 file, :func:`lines_of` several, and
  :func:`chunks` groups lines so a tokeniser can encode them in bulk. Every file the
  package reads goes through :func:`read_lines`, so it is the one place that turns
  decoding and OS errors into :class:`~primer_search.fitness.data.config.DataError`.
* Training sources: batches are int32 arrays ``[batch_size, seq_len + 1]``; inputs are
  ``[:, :-1]`` and targets ``[:, 1:]``. A row is a window of ``seq_len + 1`` consecutive
  tokens of a split's stream and consecutive windows overlap by one token
  (:func:`windows`), so each token is a target exactly once per pass. Training windows
  start at a random offset each epoch and their order is shuffled by the seed.
  :class:`ArraySource` holds the whole training stream as one (possibly memory-mapped)
  array; :class:`ShardSource` streams the LM1B shards, shuffling the shard order per
  epoch and passing the packed rows through a shuffle buffer of about
  :data:`~primer_search.fitness.data.config.LM1B_SHUFFLE_TOKENS` tokens.
* Keeping training fed: a shard is tokenised once and its token stream cached beside the
  other cache entries (memory-mapped on every later read, by any process on the
  machine); the next shard of an epoch is tokenised in a background thread while the
  current one is served. :class:`Prefetcher` runs a batch stream in a background thread a
  number of batches ahead and counts the time its consumer waited, which the trainer
  keeps out of a budget in seconds.

A source's ``batches(rng, batch_size, seq_len)`` is an infinite iterator whose output is
fixed by the state of ``rng``. These names are internal to the ``primer_search.fitness.data``
package (its ``__init__`` is the public surface).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from primer_search.fitness.data.cache import cached, file_identity
from primer_search.fitness.data.config import LM1B_SHUFFLE_TOKENS, DataError
from primer_search.fitness.data.tokenizers import Tokenizer

# Lines a tokeniser encodes at a time when a corpus is streamed.
LINES_PER_CHUNK = 8192
# Tokens of a cached shard packed into rows at a time (the shuffle buffer's grain).
TOKENS_PER_SLICE = 1 << 16
# Batches a Prefetcher holds ready.
PREFETCH_BATCHES = 64

# --------------------------------------------------------------------------------------
# Reading text


def read_lines(path: Path) -> Iterator[str]:
    """Lines of a UTF-8 file (universal newlines), streamed."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            yield from f
    except UnicodeDecodeError as e:
        raise DataError(f"{str(path)!r} is not UTF-8 text ({e}); expected UTF-8") from e
    except OSError as e:
        raise DataError(f"cannot read {str(path)!r} ({e.strerror or e})") from e


def lines_of(paths: Iterable[Path]) -> Iterator[str]:
    """Lines of the files ``paths``, one file after the other."""
    for p in paths:
        yield from read_lines(p)


def chunks(lines: Iterable[str], size: int = LINES_PER_CHUNK) -> Iterator[list[str]]:
    """``lines`` in lists of ``size`` (the last one may be shorter, never empty)."""
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def nonempty(lines: Iterable[str]) -> list[str]:
    """The lines of ``lines`` that are neither empty nor only whitespace."""
    return [line for line in lines if not line.isspace() and line]


# --------------------------------------------------------------------------------------
# Training streams


class Batcher:
    """Collects rows ``[n, seq_len + 1]`` and hands out full batches in arrival order."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self._parts: list[np.ndarray] = []
        self._count = 0

    def add(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        """Take ``rows`` in and yield every batch that is now full."""
        if len(rows):
            self._parts.append(rows)
            self._count += len(rows)
        while self._count >= self.batch_size:
            pool = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
            yield np.array(pool[: self.batch_size], dtype=np.int32)  # a copy, not a view
            rest = pool[self.batch_size:]
            self._parts = [rest] if len(rest) else []
            self._count = len(rest)


def windows(stream: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``seq_len + 1`` tokens at stride ``seq_len``, and the unused tail."""
    n = (stream.size - 1) // seq_len if stream.size > seq_len else 0
    if n == 0:
        return np.empty((0, seq_len + 1), np.int32), stream
    view = np.lib.stride_tricks.sliding_window_view(stream, seq_len + 1)[::seq_len][:n]
    return np.array(view, dtype=np.int32), stream[n * seq_len:]


class ArraySource:
    """Training data held as one token array (in memory or memory-mapped)."""

    def __init__(self, stream: np.ndarray):
        self.stream = stream

    def batches(self, rng: np.random.Generator, batch_size: int,
                seq_len: int) -> Iterator[np.ndarray]:
        """Windows of the stream, a new random offset and order each epoch."""
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


class ShardSource:
    """LM1B training shards: tokenised once into the cache, then shuffled and packed.

    ``cache`` is the cache folder (None: tokenise on every read, nothing written). Each
    epoch visits the shards in an order drawn from ``rng``, packs each shard's tokens into
    rows (continuing across shard boundaries) and passes them through a shuffle buffer.
    """

    def __init__(self, files: Sequence[Path], tokenizer: Tokenizer, cache: Path | None):
        self.files = list(files)
        self.tokenizer = tokenizer
        self.cache = cache

    def tokens(self, path: Path) -> np.ndarray:
        """The token stream of the shard ``path`` (uint16 or int32, memory-mapped if cached)."""

        def build():
            parts = [self.tokenizer.encode(chunk) for chunk in chunks(read_lines(path))]
            ids = np.concatenate(parts) if parts else np.empty(0, np.int32)
            small = self.tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1
            return {"tokens": ids.astype(np.uint16) if small else ids}, {"tokens": int(ids.size)}

        if self.cache is None:
            return build()[0]["tokens"]
        key = {"shard": file_identity([path]), **self.tokenizer.key()}
        return cached(self.cache, "lm1b-shard", key, build)[0]["tokens"]

    def prepare(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Tokenise every shard into the cache now; returns the number of tokens."""
        total = 0
        for k, path in enumerate(self.files):
            total += int(self.tokens(path).size)
            if progress is not None:
                progress(k + 1, len(self.files))
        return total

    def batches(self, rng: np.random.Generator, batch_size: int,
                seq_len: int) -> Iterator[np.ndarray]:
        """Rows packed shard by shard, emitted in random halves of the shuffle buffer."""
        capacity = max(2 * batch_size, LM1B_SHUFFLE_TOKENS // (seq_len + 1))
        batcher = Batcher(batch_size)
        buffer: list[np.ndarray] = []
        buffered = 0
        tail = np.empty(0, np.int32)
        with concurrent.futures.ThreadPoolExecutor(1, "primer-search-shards") as ahead:
            while True:
                epoch_tokens = 0
                order = [self.files[k] for k in rng.permutation(len(self.files))]
                coming = ahead.submit(self.tokens, order[0])
                for i in range(len(order)):
                    shard = coming.result()
                    if i + 1 < len(order):  # tokenise the next shard while this one is served
                        coming = ahead.submit(self.tokens, order[i + 1])
                    epoch_tokens += shard.size
                    for start in range(0, shard.size, TOKENS_PER_SLICE):
                        ids = shard[start:start + TOKENS_PER_SLICE].astype(np.int32)
                        rows, tail = windows(np.concatenate([tail, ids]), seq_len)
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


class _Raised:
    """An exception of the producer thread, handed to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def _produce(batches: Iterator[np.ndarray], out: queue.Queue, stop: threading.Event) -> None:
    """Put ``batches`` into ``out`` until ``stop`` is set; an exception ends the stream."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    try:
        for batch in batches:
            if not put(batch):
                return
    except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
        put(_Raised(e))


class Prefetcher:
    """A batch iterator run ``depth`` batches ahead in a background thread.

    Iterating gives the same batches in the same order as ``batches`` itself. ``waited_s``
    is the time spent waiting for a batch that was not ready yet. Close it (or use it as a
    context manager) to stop the thread; dropping it stops the thread too.
    """

    def __init__(self, batches: Iterator[np.ndarray], depth: int = PREFETCH_BATCHES):
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.waited_s = 0.0
        self._thread = threading.Thread(target=_produce, args=(batches, self._queue, self._stop),
                                        name="primer-search-batches", daemon=True)
        self._thread.start()

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> np.ndarray:
        if self._error is not None:
            raise self._error
        try:
            item = self._queue.get_nowait()
        except queue.Empty:
            t = time.perf_counter()
            item = self._queue.get()
            self.waited_s += time.perf_counter() - t
        if isinstance(item, _Raised):
            self._error = item.error
            raise item.error
        return item

    def close(self, wait: bool = False) -> None:
        """Stop the producer thread; it ends within a fraction of a second, or once a
        shard it is tokenising is written to the cache. ``wait``: until it has ended."""
        self._stop.set()
        if wait:
            while True:  # drain, so that a producer blocked on a full queue sees the stop
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._thread.join()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self._stop.set()
