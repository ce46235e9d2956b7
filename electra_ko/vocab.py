"""Vocabulary building (`python -m electra_ko.vocab`) and the tokenizer every stage loads.

A vocab directory holds `vocab.txt` (one token per line, id = line number),
`vocab_meta.json` (how it was built) and, for SentencePiece, `spm.model`.
`load_tokenizer(path)` turns such a directory (or a bare published `vocab.txt`) into a
`Tokenizer` with one interface for both kinds. No TensorFlow here: the in-graph
tokenizer elsewhere must reproduce the standard BERT pipeline built below.
"""
import collections
import dataclasses
import hashlib
import io
import itertools
import os
import sys
import time

import numpy as np
import tokenizers
import tqdm
from absl import app, flags, logging
from tokenizers import decoders, normalizers, pre_tokenizers

from electra_ko import fast_wordpiece, storage

MAX_CHARS_PER_WORD = 200
SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
VOCAB_FILE = "vocab.txt"
META_FILE = "vocab_meta.json"
DEFAULT_VOCAB_SIZE = 32000
SPM_FILE = "spm.model"
WORDPIECE = "wordpiece"
SENTENCEPIECE = "sentencepiece"
CONTINUING_PREFIX = "##"
SPM_SEED = 12345  # fixes SentencePiece's sentence sampling, so rebuilds are reproducible
SPM_SPACE = "\u2581"  # "▁", SentencePiece's sign for a space


@dataclasses.dataclass(frozen=True)
class VocabSettings:
    """How a vocab is built: `build_vocab`'s options, the flags of `python -m electra_ko.vocab`
    and the defaults of the pretraining config's vocab keys, defined once here."""
    tokenizer: str = WORDPIECE
    vocab_size: int = DEFAULT_VOCAB_SIZE
    num_unused: int = 200
    do_lower_case: bool = False
    heldout_lines: int = 2000
    limit_alphabet: int = 15000
    min_frequency: int = 2
    spm_model_type: str = "unigram"
    character_coverage: float = 0.9995
    input_sentence_size: int = 0
    shuffle_input_sentence: bool = True

    def recorded(self):
        """The settings `vocab_meta.json` records, for comparing a built vocab with these."""
        return {"vocab_size": self.vocab_size, "num_unused": self.num_unused,
                "do_lower_case": self.do_lower_case, "limit_alphabet": self.limit_alphabet,
                "min_frequency": self.min_frequency}


class VocabError(ValueError):
    """A vocabulary, its metadata or the builder's input is unusable (message says why)."""


def unused_tokens(count):
    return [f"[unused{i}]" for i in range(count)]


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- loading


class Tokenizer:
    """Text -> ids with the vocab's own special ids; never adds [CLS]/[SEP] itself."""

    def __init__(self, kind, tokens, special_ids, vocab_sha256, do_lower_case):
        self.kind = kind
        self.tokens = tokens
        self.vocab_size = len(tokens)
        self.special_ids = special_ids
        self.vocab_sha256 = vocab_sha256
        self.do_lower_case = do_lower_case

    def encode_batch(self, texts):
        """Ids of each text, without special tokens; batches run in native threads."""
        raise NotImplementedError

    def tokenize(self, text):
        """Token strings of one text (WordPiece continuations keep their `##`)."""
        raise NotImplementedError

    def pipeline(self):
        """A new `tokenizers.Tokenizer` giving the same ids (what an export's tokenizer.json
        holds)."""
        raise NotImplementedError

    def encode_corpus(self, lines):
        """`(ids, offsets)`: the ids of `encode_batch(lines)` as one int32 array, line `i`
        being `ids[offsets[i]:offsets[i + 1]]`; the data builder's bulk path."""
        id_lists = self.encode_batch(lines)
        counts = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        ids = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int32,
                          count=int(counts.sum()))
        return ids, np.concatenate(([0], np.cumsum(counts)))

    def __repr__(self):
        return (f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, "
                f"do_lower_case={self.do_lower_case}, sha256={self.vocab_sha256[:12]})")


class WordPieceTokenizer(Tokenizer):
    def __init__(self, tokens, special_ids, vocab_sha256, do_lower_case):
        super().__init__(WORDPIECE, tokens, special_ids, vocab_sha256, do_lower_case)
        self._rust = wordpiece_pipeline({tok: i for i, tok in enumerate(tokens)}, do_lower_case)
        self._corpus_encoder = None

    def encode_batch(self, texts):
        encodings = self._rust.encode_batch_fast(list(texts), add_special_tokens=False)
        return [enc.ids for enc in encodings]

    def encode_corpus(self, lines):
        """Same ids as `encode_batch`, ~5x faster on natural text (see `fast_wordpiece`)."""
        if self._corpus_encoder is None:
            self._corpus_encoder = fast_wordpiece.CorpusEncoder(
                self._rust, self.tokens, self.special_ids["unk"], MAX_CHARS_PER_WORD,
                CONTINUING_PREFIX, lowercase=self.do_lower_case)
        return self._corpus_encoder.encode(lines)

    def tokenize(self, text):
        return self._rust.encode(text, add_special_tokens=False).tokens

    def pipeline(self):
        return wordpiece_pipeline({tok: i for i, tok in enumerate(self.tokens)},
                                  self.do_lower_case)


class SentencePieceTokenizer(Tokenizer):
    def __init__(self, tokens, special_ids, vocab_sha256, do_lower_case, model_proto):
        super().__init__(SENTENCEPIECE, tokens, special_ids, vocab_sha256, do_lower_case)
        import sentencepiece  # only SentencePiece vocabs pay for the import

        self.model_proto = model_proto
        self._spm = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
        pieces = [self._spm.id_to_piece(i) for i in range(self._spm.get_piece_size())]
        if pieces != tokens:
            raise VocabError(f"{SPM_FILE} and {VOCAB_FILE} list different pieces "
                             f"({len(pieces)} vs {len(tokens)}): rebuild the vocab")

    def encode_batch(self, texts):
        return self._spm.encode(list(texts), out_type=int, num_threads=os.cpu_count() or 1)

    def tokenize(self, text):
        """Pieces by id, so unknown text shows as [UNK] as in WordPiece (SentencePiece
        itself would echo the unknown surface string)."""
        return [self.tokens[i] for i in self._spm.encode(text, out_type=int)]

    def pipeline(self):
        return sentencepiece_pipeline(self.model_proto)


def bert_normalizer(do_lower_case):
    """BERT's normaliser. Accent stripping is tied to lower-casing explicitly: left to the
    library default it follows `lowercase`, and when on it NFD-decomposes Hangul to jamo."""
    return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                      strip_accents=do_lower_case, lowercase=do_lower_case)


def wordpiece_pipeline(vocab, do_lower_case):
    """The standard BERT tokenizer (normaliser, whitespace+punctuation split, WordPiece)."""
    model = tokenizers.models.WordPiece(vocab=vocab, unk_token=SPECIAL_TOKENS["unk"],
                                        max_input_chars_per_word=MAX_CHARS_PER_WORD)
    pipeline = tokenizers.Tokenizer(model)
    pipeline.normalizer = bert_normalizer(do_lower_case)
    pipeline.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return pipeline


def sentencepiece_pipeline(model_proto):
    """A SentencePiece model as a `tokenizers` pipeline with the same ids: its normalisation
    rule (the precompiled charsmap), its whitespace settings, its pieces, and its [PAD],
    [UNK] and control symbols as special tokens."""
    from sentencepiece.sentencepiece_model_pb2 import ModelProto

    proto = ModelProto.FromString(model_proto)
    spec, piece_type = proto.normalizer_spec, ModelProto.SentencePiece
    pipeline = tokenizers.Tokenizer(_sentencepiece_model(proto))
    steps = [normalizers.Precompiled(spec.precompiled_charsmap)]
    if spec.remove_extra_whitespaces:  # no space at either end, none repeated
        steps += [normalizers.Strip(), normalizers.Replace(tokenizers.Regex(" {2,}"), " ")]
    if spec.add_dummy_prefix:  # SentencePiece adds it even before a space it keeps
        steps.append(normalizers.Prepend(SPM_SPACE))
    pipeline.normalizer = normalizers.Sequence(steps)
    pipeline.pre_tokenizer = pre_tokenizers.Metaspace(SPM_SPACE, prepend_scheme="never")
    pipeline.decoder = decoders.Metaspace(
        SPM_SPACE, prepend_scheme="always" if spec.add_dummy_prefix else "never")
    pipeline.add_special_tokens([
        tokenizers.AddedToken(piece.piece, special=True, normalized=False)
        for piece in proto.pieces if piece.type in (piece_type.UNKNOWN, piece_type.CONTROL)])
    return pipeline


def _sentencepiece_model(proto):
    """Unigram with the pieces' scores; BPE with SentencePiece's merge order: the pair whose
    merged piece scores highest first. Runs of unknown characters give one [UNK], as in
    SentencePiece."""
    from sentencepiece.sentencepiece_model_pb2 import ModelProto, TrainerSpec

    trainer = proto.trainer_spec
    if trainer.model_type == TrainerSpec.UNIGRAM:
        return tokenizers.models.Unigram([(p.piece, p.score) for p in proto.pieces],
                                         unk_id=trainer.unk_id)
    if trainer.model_type != TrainerSpec.BPE:
        name = TrainerSpec.ModelType.Name(trainer.model_type)
        raise VocabError(f"{SPM_FILE}: a {name} model; only unigram and bpe models have a "
                         f"tokenizers pipeline")
    normal = {p.piece: p.score for p in proto.pieces
              if p.type == ModelProto.SentencePiece.NORMAL}
    merges = [(piece[:cut], piece[cut:])
              for piece in sorted(normal, key=normal.get, reverse=True)
              for cut in range(1, len(piece)) if piece[:cut] in normal and piece[cut:] in normal]
    ids = {p.piece: i for i, p in enumerate(proto.pieces)}
    return tokenizers.models.BPE(ids, merges, unk_token=trainer.unk_piece, fuse_unk=True)


def load_tokenizer(path):
    """Tokenizer for a vocab directory or its vocab.txt; a bare vocab.txt is cased WordPiece."""
    vocab_dir, vocab_path = vocab_paths(path)
    vocab_bytes = _read_bytes(vocab_path, what="vocab file")
    tokens = _parse_vocab(vocab_bytes, vocab_path)
    special_ids = _special_ids(tokens, vocab_path)
    vocab_sha256 = sha256_hex(vocab_bytes)
    meta_path = storage.join(vocab_dir, META_FILE)
    meta = _read_meta(meta_path, vocab_sha256) if storage.exists(meta_path) else {}
    kind = meta.get("tokenizer", WORDPIECE)
    do_lower_case = bool(meta.get("do_lower_case", False))
    if kind == WORDPIECE:
        return WordPieceTokenizer(tokens, special_ids, vocab_sha256, do_lower_case)
    if kind == SENTENCEPIECE:
        model_proto = _read_bytes(storage.join(vocab_dir, SPM_FILE), what="SentencePiece model")
        return SentencePieceTokenizer(tokens, special_ids, vocab_sha256, do_lower_case,
                                      model_proto)
    raise VocabError(f"{meta_path}: unknown tokenizer {kind!r} "
                     f"(expected {WORDPIECE!r} or {SENTENCEPIECE!r})")


def vocab_paths(path):
    """(directory, vocab file) for a vocab directory or file, local or gs://; the file
    need not exist yet."""
    path = os.fspath(path).rstrip("/")
    is_file = path.endswith(".txt") if storage.is_gcs(path) else not os.path.isdir(path)
    if not is_file:
        return path, storage.join(path, VOCAB_FILE)
    directory = path.rsplit("/", 1)[0] if storage.is_gcs(path) else os.path.dirname(path)
    return directory or ".", path


def _read_bytes(path, what):
    if not storage.exists(path):
        raise VocabError(f"{what} not found: {path}")
    with storage.open_read(path, binary=True) as f:
        return f.read()


def _parse_vocab(data, vocab_path):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise VocabError(f"{vocab_path}:{line}: not valid UTF-8") from None
    tokens = [line.rstrip("\r") for line in text.split("\n")]
    if tokens and tokens[-1] == "":
        tokens.pop()
    _check_unique(tokens, vocab_path)
    return tokens


def _check_unique(tokens, vocab_path):
    first_line = {}
    for line, token in enumerate(tokens, start=1):
        if token in first_line:
            raise VocabError(f"{vocab_path}:{line}: token {token!r} repeats line "
                             f"{first_line[token]}; ids would be ambiguous")
        first_line[token] = line


def _special_ids(tokens, vocab_path):
    ids = {tok: i for i, tok in enumerate(tokens)}
    missing = [tok for tok in SPECIAL_TOKENS.values() if tok not in ids]
    if missing:
        raise VocabError(f"{vocab_path}: vocab lacks special tokens {', '.join(missing)} "
                         f"(needs all of {' '.join(SPECIAL_TOKENS.values())})")
    return {key: ids[tok] for key, tok in SPECIAL_TOKENS.items()}


def _read_meta_json(meta_path):
    try:
        return storage.read_json(meta_path, VocabError)
    except FileNotFoundError:
        raise VocabError(f"vocab metadata not found: {meta_path}") from None


def _read_meta(meta_path, vocab_sha256):
    meta = _read_meta_json(meta_path)
    recorded = meta.get("vocab_sha256")
    if recorded != vocab_sha256:
        raise VocabError(f"{meta_path}: vocab_sha256 {recorded} does not match {VOCAB_FILE} "
                         f"({vocab_sha256}); the vocab was changed after it was built")
    return meta


# --------------------------------------------------------------------------- building


def reserved_tokens(num_unused):
    """Tokens that precede every learned one: the five specials, then [unusedN]."""
    return list(SPECIAL_TOKENS.values()) + unused_tokens(num_unused)


def corpus_lines(inputs, bad_lines=None):
    """Stripped non-empty lines of every input in order; a line that is not UTF-8 is
    skipped and, when `bad_lines` is a list, recorded there as "file:line"."""
    for path in inputs:
        with storage.open_read(path, binary=True) as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    if bad_lines is not None:
                        bad_lines.append(f"{path}:{number}")
                    continue
                if line:
                    yield line


class HeldoutSplit:
    """Every `stride`-th line (up to `count` lines) is held out: spread over the whole
    corpus, deterministic, and never seen by the trainer."""

    def __init__(self, total_lines, heldout_lines):
        if heldout_lines >= total_lines:
            raise VocabError(f"corpus has {total_lines} non-empty lines, not more than "
                             f"--heldout_lines={heldout_lines}: lower --heldout_lines")
        self.count = heldout_lines
        self.stride = total_lines // heldout_lines if heldout_lines else 0
        self.training_lines = total_lines - heldout_lines

    def is_heldout(self, index):
        return bool(self.count) and index % self.stride == 0 and index // self.stride < self.count

    def training(self, lines):
        return (line for i, line in enumerate(lines) if not self.is_heldout(i))

    def heldout(self, lines):
        return [line for i, line in enumerate(lines) if self.is_heldout(i)]


def heldout_report(tokenizer, lines):
    """UNK rate and tokens per eojeol (space-separated word) of `lines`."""
    ids = tokenizer.encode_batch(lines)
    tokens = sum(len(seq) for seq in ids)
    unk_id = tokenizer.special_ids["unk"]
    unk_tokens = sum(seq.count(unk_id) for seq in ids)
    eojeols = sum(len(line.split()) for line in lines)
    return {
        "heldout_lines": len(lines),
        "eojeols": eojeols,
        "tokens": tokens,
        "unk_tokens": unk_tokens,
        "unk_rate": unk_tokens / tokens if tokens else 0.0,
        "tokens_per_eojeol": tokens / eojeols if eojeols else 0.0,
    }


def train_wordpiece(read_lines, num_lines, vocab_size, reserved, do_lower_case, limit_alphabet,
                    min_frequency):
    """Learned WordPiece vocab (reserved tokens first) from the same pipeline used to load it;
    `read_lines()` gives a fresh iterator over the training lines.

    Two passes make the vocab the same on every run. The `tokenizers` trainer numbers the ##
    forms of characters in hash-map order (huggingface/tokenizers#1794) and breaks ties
    between equally frequent merges by those numbers, so a single pass learns a few
    different tokens each run. The first pass finds the alphabet and its ## forms without
    merging; the second fixes their numbers (as reserved tokens, characters before ## forms
    as the trainer itself numbers them) and learns the merges.

    The first pass keeps every character; when there are more than `limit_alphabet`, the
    most frequent are kept, ties going to the lower code point (the trainer's own cut breaks
    them in hash order too).
    """
    found = set(_run_wordpiece_trainer(read_lines(), num_lines, 0, reserved, do_lower_case,
                                       min_frequency=min_frequency))
    alphabet = sorted(token for token in found if len(token) == 1)
    if len(alphabet) > limit_alphabet:
        counts = character_counts(read_lines(), do_lower_case)
        alphabet = sorted(sorted(alphabet, key=lambda c: (-counts[c], c))[:limit_alphabet])
    continuations = [CONTINUING_PREFIX + c for c in alphabet if CONTINUING_PREFIX + c in found]
    needed = len(reserved) + len(alphabet) + len(continuations)
    if needed > vocab_size:
        raise VocabError(
            f"the corpus alphabet alone needs {needed} tokens (reserved tokens plus "
            f"characters with their ## forms), more than --vocab_size={vocab_size}: raise "
            f"--vocab_size or lower --limit_alphabet")
    fixed = alphabet + continuations  # numbered in the first pass's order: characters first
    learned = _run_wordpiece_trainer(read_lines(), num_lines, vocab_size, reserved + fixed,
                                     do_lower_case, limit_alphabet=len(alphabet),
                                     min_frequency=min_frequency, initial_alphabet=alphabet)
    return reserved + canonical_order(fixed + learned), None


def character_counts(lines, do_lower_case):
    """How often each character occurs in `lines` after the WordPiece normaliser."""
    normalize = bert_normalizer(do_lower_case).normalize_str
    counts = collections.Counter()
    for line in lines:
        counts.update(normalize(line))
    return counts


def _run_wordpiece_trainer(lines, num_lines, vocab_size, fixed_tokens, do_lower_case, **options):
    """The learned tokens (`fixed_tokens` left out) of one `tokenizers` WordPiece training."""
    pipeline = wordpiece_pipeline({}, do_lower_case)
    trainer = tokenizers.trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=fixed_tokens,
        continuing_subword_prefix=CONTINUING_PREFIX,
        show_progress=sys.stdout.isatty(), **options)  # its bars print bare newlines when redirected
    pipeline.train_from_iterator(lines, trainer, length=num_lines)
    reserved = set(fixed_tokens)
    return [token for token in pipeline.get_vocab() if token not in reserved]


def canonical_order(learned):
    """Learned WordPiece tokens in a fixed order: characters, their ## forms, longer
    word-initial pieces, longer ## pieces, each group by code point. The `tokenizers`
    trainer numbers ## tokens in hash-map order (huggingface/tokenizers#1794), so its own
    order changes from run to run; ids do not matter to WordPiece matching, and a fixed
    order gives one vocab.txt per token set."""
    def key(token):
        stem = token.removeprefix(CONTINUING_PREFIX)
        return len(stem) > 1, token.startswith(CONTINUING_PREFIX), token
    return sorted(learned, key=key)


def train_sentencepiece(lines, vocab_size, reserved, do_lower_case, model_type,
                        character_coverage, input_sentence_size, shuffle_input_sentence):
    """SentencePiece model with [PAD]/[UNK] at 0/1 and the other reserved tokens as
    control symbols, which text can never produce."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.set_random_generator_seed(SPM_SEED)
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=lines, model_writer=model, vocab_size=vocab_size,
            model_type=model_type, character_coverage=character_coverage,
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=shuffle_input_sentence,
            normalization_rule_name="nmt_nfkc_cf" if do_lower_case else "nmt_nfkc",
            pad_id=0, pad_piece=reserved[0], unk_id=1, unk_piece=reserved[1],
            bos_id=-1, eos_id=-1, control_symbols=reserved[2:],
            num_threads=os.cpu_count() or 1)  # its INFO log reports training progress
    except RuntimeError as err:
        raise VocabError(f"SentencePiece training failed: {err}") from None
    processor = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    tokens = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    return tokens, model.getvalue()


def build_vocab(inputs, output_dir, settings=None, **changes):
    """Train a vocab on `inputs` as `settings` (default `VocabSettings()`) with `changes`
    (its field names) say, write it to `output_dir` and return its metadata (the contents
    of `vocab_meta.json`)."""
    s = dataclasses.replace(settings or VocabSettings(), **changes)
    tokenizer, vocab_size, num_unused, do_lower_case = (s.tokenizer, s.vocab_size, s.num_unused,
                                                        s.do_lower_case)
    started = time.time()
    storage.check_writable(output_dir)
    storage.remove_stale_temporaries(output_dir, [storage.writer_temporaries(name) for name in
                                                  (VOCAB_FILE, META_FILE, SPM_FILE)])
    reserved = reserved_tokens(num_unused)
    _check_build_args(inputs, tokenizer, vocab_size, reserved)
    bad_lines = []
    total = sum(1 for _ in tqdm.tqdm(corpus_lines(inputs, bad_lines), desc="counting lines",
                                     unit=" lines"))
    _log_bad_lines(bad_lines)
    if total == 0:
        raise VocabError(f"empty corpus: no non-empty line in {', '.join(inputs)}")
    split = HeldoutSplit(total, s.heldout_lines)
    def read_training(desc="reading for training"):
        return iter(tqdm.tqdm(split.training(corpus_lines(inputs)), total=split.training_lines,
                              desc=desc, unit=" lines"))
    if tokenizer == WORDPIECE:
        trainer_options = {"limit_alphabet": s.limit_alphabet, "min_frequency": s.min_frequency}
        tokens, model_proto = train_wordpiece(read_training, split.training_lines, vocab_size,
                                              reserved, do_lower_case, **trainer_options)
    else:
        trainer_options = {"model_type": s.spm_model_type,
                           "character_coverage": s.character_coverage,
                           "input_sentence_size": s.input_sentence_size,
                           "shuffle_input_sentence": s.shuffle_input_sentence}
        tokens, model_proto = train_sentencepiece(read_training(), vocab_size, reserved,
                                                  do_lower_case, **trainer_options)
    built = _tokenizer_from(tokens, model_proto, do_lower_case, output_dir)
    if built.vocab_size < vocab_size:
        logging.warning("the corpus yields only %d tokens of the %d asked for (corpus too "
                        "small or --min_frequency too high)", built.vocab_size, vocab_size)
    report = heldout_report(built, split.heldout(corpus_lines(inputs)))
    meta = {
        "tokenizer": tokenizer,
        "do_lower_case": do_lower_case,
        "max_chars_per_word": MAX_CHARS_PER_WORD if tokenizer == WORDPIECE else None,
        "vocab_size": built.vocab_size,
        "vocab_sha256": built.vocab_sha256,
        "special_ids": built.special_ids,
        "num_unused": num_unused,
        "requested_vocab_size": vocab_size,
        "trainer": trainer_options,
        "inputs": list(inputs),
        "training_lines": split.training_lines,
        "undecodable_lines": len(bad_lines),
        "report": report,
        "build_seconds": round(time.time() - started, 1),
    }
    _publish_vocab_files(output_dir, tokens, model_proto, meta)
    return meta


def ensure_vocab(path, corpus, settings, check_size=True):
    """Make sure the vocab at `path` (a directory or its vocab.txt) exists, built as
    `settings` say. A missing one is built from `corpus` (files or globs), with no held-out
    lines. An existing one is kept only if `vocab_meta.json` records the same settings
    (`check_size=False` accepts any `vocab_size`); settings it does not record (a
    SentencePiece vocab has no WordPiece trainer options) accept any value.

    Returns (its tokenizer, whether it has a `vocab_meta.json`): a vocab without one (e.g.
    a published vocab.txt) records nothing to compare."""
    if not storage.exists(path):
        inputs = [found for pattern in corpus for found in storage.glob(pattern) or [pattern]]
        build_vocab(inputs, vocab_paths(path)[0], settings, heldout_lines=0)
        return load_tokenizer(path), True
    tokenizer = load_tokenizer(path)  # refuses a vocab.txt changed after its build
    meta_path = storage.join(vocab_paths(path)[0], META_FILE)
    if not storage.exists(meta_path):
        return tokenizer, False
    meta = _read_meta_json(meta_path)
    trainer = meta.get("trainer") or {}
    recorded = {"vocab_size": meta.get("requested_vocab_size"),
                "num_unused": meta.get("num_unused"), "do_lower_case": meta.get("do_lower_case"),
                "limit_alphabet": trainer.get("limit_alphabet"),
                "min_frequency": trainer.get("min_frequency")}
    wanted = settings.recorded()
    if not check_size:
        del wanted["vocab_size"]
    differences = [f"{key}={recorded[key]!r} there, {value!r} wanted"
                   for key, value in wanted.items() if recorded[key] not in (None, value)]
    if differences:
        raise VocabError(f"{path} was built with other vocab settings ({'; '.join(differences)}): "
                         "set them back, or delete the vocab and the shards made with it to "
                         "rebuild both")
    return tokenizer, True


def _check_build_args(inputs, tokenizer, vocab_size, reserved):
    if not inputs:
        raise VocabError("no --corpus given")
    for path in inputs:
        if not storage.exists(path):
            raise VocabError(f"input not found: {path}")
    if tokenizer not in (WORDPIECE, SENTENCEPIECE):
        raise VocabError(f"unknown tokenizer {tokenizer!r}")
    if vocab_size <= len(reserved):
        num_unused = len(reserved) - len(SPECIAL_TOKENS)
        raise VocabError(f"--vocab_size={vocab_size} leaves no room for learned tokens: the "
                         f"{len(SPECIAL_TOKENS)} special and {num_unused} unused tokens "
                         f"already take {len(reserved)} ids")


def _log_bad_lines(bad_lines):
    if bad_lines:
        shown = ", ".join(bad_lines[:5])
        logging.warning("skipped %d line(s) that are not UTF-8, e.g. %s", len(bad_lines), shown)


def _vocab_bytes(tokens):
    return "".join(token + "\n" for token in tokens).encode("utf-8")


def _tokenizer_from(tokens, model_proto, do_lower_case, output_dir):
    """The tokenizer the new files will define, before any of them is written."""
    special_ids = _special_ids(tokens, output_dir)
    vocab_sha256 = sha256_hex(_vocab_bytes(tokens))
    if model_proto is None:
        return WordPieceTokenizer(tokens, special_ids, vocab_sha256, do_lower_case)
    return SentencePieceTokenizer(tokens, special_ids, vocab_sha256, do_lower_case, model_proto)


def _publish_vocab_files(output_dir, tokens, model_proto, meta):
    """spm.model, vocab_meta.json, then vocab.txt, each atomically. A build killed part way
    never leaves a vocab.txt that loads: there is none yet, or the old one, which the new
    vocab_meta.json's sha256 (or the new spm.model's pieces) refuses."""
    storage.makedirs(output_dir)
    if model_proto is not None:
        with storage.atomic_writer(storage.join(output_dir, SPM_FILE), binary=True) as f:
            f.write(model_proto)
    storage.write_json(storage.join(output_dir, META_FILE), meta)
    with storage.atomic_writer(storage.join(output_dir, VOCAB_FILE), binary=True) as f:
        f.write(_vocab_bytes(tokens))


# --------------------------------------------------------------------------- CLI

FLAGS = flags.FLAGS


def define_flags():
    """Called only when run as a program, so importing this module adds no flags that
    could clash with another stage's `--corpus` / `--output_dir`. Defaults: `VocabSettings`."""
    d = VocabSettings()
    flags.DEFINE_multi_string("corpus", None, "Corpus file (one sentence per line); repeatable, "
                              "globs too. Local path or gs://.")
    flags.DEFINE_alias("input", "corpus")  # its name before 0.2
    flags.DEFINE_string("output_dir", None, "Directory (or gs:// prefix) for vocab.txt, "
                        "vocab_meta.json and, for SentencePiece, spm.model.")
    flags.DEFINE_enum("tokenizer", d.tokenizer, [WORDPIECE, SENTENCEPIECE], "Vocabulary kind.")
    flags.DEFINE_integer("vocab_size", d.vocab_size,
                         "Total size, special and [unusedN] tokens included.")
    flags.DEFINE_integer("num_unused", d.num_unused, "[unusedN] tokens reserved after the 5 specials.")
    flags.DEFINE_bool("do_lower_case", d.do_lower_case, "Lower-case and strip accents. Off for "
                      "Korean: accent stripping decomposes Hangul syllables into jamo.")
    flags.DEFINE_integer("heldout_lines", d.heldout_lines, "Lines spread over the corpus, kept out "
                         "of training, on which the UNK rate and tokens per eojeol are reported.")
    flags.DEFINE_integer("limit_alphabet", d.limit_alphabet, "WordPiece: most characters kept in "
                         "the alphabet (Hangul alone has 11,172 syllables).")
    flags.DEFINE_integer("min_frequency", d.min_frequency,
                         "WordPiece: least count of a pair to be merged.")
    flags.DEFINE_enum("spm_model_type", d.spm_model_type, ["unigram", "bpe"],
                      "SentencePiece model type.")
    flags.DEFINE_float("character_coverage", d.character_coverage, "SentencePiece: share of "
                       "characters covered by the alphabet (0.9995 suits Korean).")
    flags.DEFINE_integer("input_sentence_size", d.input_sentence_size, "SentencePiece: sample at "
                         "most this many training lines (0 = all); for large corpora.")
    flags.DEFINE_bool("shuffle_input_sentence", d.shuffle_input_sentence, "SentencePiece: sample "
                      "lines at random when --input_sentence_size is set.")


def settings_from_flags():
    return VocabSettings(**{field.name: getattr(FLAGS, field.name)
                            for field in dataclasses.fields(VocabSettings)})


def main(argv):
    del argv
    if FLAGS.do_lower_case:
        logging.warning("--do_lower_case also strips accents, which decomposes Hangul "
                        "syllables into jamo")
    try:
        meta = build_vocab(FLAGS.corpus, FLAGS.output_dir, settings_from_flags())
    except (VocabError, storage.OutputError) as err:
        sys.exit(f"error: {err}")
    print(format_summary(meta, FLAGS.output_dir))


def format_summary(meta, output_dir):
    report = meta["report"]
    return (f"{meta['tokenizer']} vocab of {meta['vocab_size']} tokens written to {output_dir} "
            f"in {meta['build_seconds']} s\n"
            f"held-out report ({report['heldout_lines']} lines, {report['eojeols']} eojeols): "
            f"UNK rate {report['unk_rate']:.4%}, "
            f"tokens per eojeol {report['tokens_per_eojeol']:.3f}")


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["corpus", "output_dir"])
    app.run(main)
