"""Vocabulary building (`python -m electra_ko.vocab`) and the tokenizer every stage loads.

A vocab directory holds `vocab.txt` (one token per line, id = line number),
`vocab_meta.json` (how it was built) and, for SentencePiece, `spm.model`.
`load_tokenizer(path)` turns such a directory (or a bare published `vocab.txt`) into a
`Tokenizer` with one interface for both kinds. No TensorFlow here: the in-graph
tokenizer elsewhere must reproduce the standard BERT pipeline built below.
"""
import hashlib
import json
import os

import sentencepiece
import tokenizers
from tokenizers import normalizers, pre_tokenizers

MAX_CHARS_PER_WORD = 200
SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
VOCAB_FILE = "vocab.txt"
META_FILE = "vocab_meta.json"
SPM_FILE = "spm.model"
WORDPIECE = "wordpiece"
SENTENCEPIECE = "sentencepiece"
CONTINUING_PREFIX = "##"


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

    def __repr__(self):
        return (f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, "
                f"do_lower_case={self.do_lower_case}, sha256={self.vocab_sha256[:12]})")


class WordPieceTokenizer(Tokenizer):
    def __init__(self, tokens, special_ids, vocab_sha256, do_lower_case):
        super().__init__(WORDPIECE, tokens, special_ids, vocab_sha256, do_lower_case)
        self._rust = wordpiece_pipeline({tok: i for i, tok in enumerate(tokens)}, do_lower_case)

    def encode_batch(self, texts):
        encodings = self._rust.encode_batch_fast(list(texts), add_special_tokens=False)
        return [enc.ids for enc in encodings]

    def tokenize(self, text):
        return self._rust.encode(text, add_special_tokens=False).tokens


class SentencePieceTokenizer(Tokenizer):
    def __init__(self, tokens, special_ids, vocab_sha256, do_lower_case, model_proto):
        super().__init__(SENTENCEPIECE, tokens, special_ids, vocab_sha256, do_lower_case)
        self._spm = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
        pieces = [self._spm.id_to_piece(i) for i in range(self._spm.get_piece_size())]
        if pieces != tokens:
            raise VocabError(f"{SPM_FILE} and {VOCAB_FILE} list different pieces "
                             f"({len(pieces)} vs {len(tokens)}): rebuild the vocab")

    def encode_batch(self, texts):
        return self._spm.encode(list(texts), out_type=int, num_threads=os.cpu_count() or 1)

    def tokenize(self, text):
        return self._spm.encode(text, out_type=str)


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


def load_tokenizer(path):
    """Tokenizer for a vocab directory or its vocab.txt; a bare vocab.txt is cased WordPiece."""
    vocab_dir, vocab_path = _vocab_paths(path)
    vocab_bytes = _read_bytes(vocab_path, what="vocab file")
    tokens = _parse_vocab(vocab_bytes, vocab_path)
    special_ids = _special_ids(tokens, vocab_path)
    vocab_sha256 = sha256_hex(vocab_bytes)
    meta_path = os.path.join(vocab_dir, META_FILE)
    meta = _read_meta(meta_path, vocab_sha256) if os.path.exists(meta_path) else {}
    kind = meta.get("tokenizer", WORDPIECE)
    do_lower_case = bool(meta.get("do_lower_case", False))
    if kind == WORDPIECE:
        return WordPieceTokenizer(tokens, special_ids, vocab_sha256, do_lower_case)
    if kind == SENTENCEPIECE:
        model_proto = _read_bytes(os.path.join(vocab_dir, SPM_FILE), what="SentencePiece model")
        return SentencePieceTokenizer(tokens, special_ids, vocab_sha256, do_lower_case,
                                      model_proto)
    raise VocabError(f"{meta_path}: unknown tokenizer {kind!r} "
                     f"(expected {WORDPIECE!r} or {SENTENCEPIECE!r})")


def _vocab_paths(path):
    path = os.fspath(path)
    if os.path.isdir(path):
        return path, os.path.join(path, VOCAB_FILE)
    return os.path.dirname(path) or ".", path


def _read_bytes(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise VocabError(f"{what} not found: {path}") from None


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


def _read_meta(meta_path, vocab_sha256):
    try:
        meta = json.loads(_read_bytes(meta_path, what="vocab metadata"))
    except json.JSONDecodeError as err:
        raise VocabError(f"{meta_path}:{err.lineno}: invalid JSON ({err.msg})") from None
    recorded = meta.get("vocab_sha256")
    if recorded != vocab_sha256:
        raise VocabError(f"{meta_path}: vocab_sha256 {recorded} does not match {VOCAB_FILE} "
                         f"({vocab_sha256}); the vocab was changed after it was built")
    return meta
