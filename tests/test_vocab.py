"""Tests for electra_ko.vocab: tokenizer loading and the vocab builder."""
import hashlib
import json

import pytest

from electra_ko import vocab

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HAND_VOCAB = SPECIALS + ["한국", "##어", "영화", "##가", "좋", "##다", ".", "abc", "##d"]


def write_vocab(directory, tokens, meta=None):
    directory.mkdir(parents=True, exist_ok=True)
    text = "".join(tok + "\n" for tok in tokens)
    (directory / "vocab.txt").write_text(text, encoding="utf-8")
    if meta is not None:
        (directory / "vocab_meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- loading


def test_bare_vocab_loads_as_cased_wordpiece(tmp_path):
    sha = write_vocab(tmp_path, HAND_VOCAB)
    tok = vocab.load_tokenizer(tmp_path / "vocab.txt")
    assert (tok.kind, tok.do_lower_case, tok.vocab_size, tok.vocab_sha256) == (
        "wordpiece", False, len(HAND_VOCAB), sha)
    assert tok.special_ids == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert tok.tokenize("한국어 영화가 좋다.") == ["한국", "##어", "영화", "##가", "좋", "##다", "."]
    assert tok.encode_batch(["한국어 영화가", "좋다.", ""]) == [[5, 6, 7, 8], [9, 10, 11], []]


def test_special_tokens_in_text_are_not_special(tmp_path):
    """BERT splits "[CLS]" typed in text at punctuation; only the data builder inserts ids 2/3."""
    write_vocab(tmp_path, HAND_VOCAB)
    tok = vocab.load_tokenizer(tmp_path)
    assert tok.encode_batch(["영화[CLS]"]) == [[7, 1, 1, 1]]


def test_special_ids_follow_the_vocab_not_fixed_numbers(tmp_path):
    write_vocab(tmp_path, ["한국"] + list(reversed(SPECIALS)))
    tok = vocab.load_tokenizer(tmp_path)
    assert tok.special_ids == {"pad": 5, "unk": 4, "cls": 3, "sep": 2, "mask": 1}


def test_word_length_limit_is_max_chars_per_word(tmp_path):
    write_vocab(tmp_path, SPECIALS + ["가", "##가"])
    tok = vocab.load_tokenizer(tmp_path)
    limit = vocab.MAX_CHARS_PER_WORD
    assert limit == 200
    assert tok.encode_batch(["가" * limit])[0] == [5] + [6] * (limit - 1)
    assert tok.encode_batch(["가" * (limit + 1)]) == [[1]]


def test_hangul_is_never_decomposed_by_default(tmp_path):
    write_vocab(tmp_path, HAND_VOCAB)
    tok = vocab.load_tokenizer(tmp_path)
    assert vocab.bert_normalizer(False).normalize_str("한국어 Café") == "한국어 Café"
    assert tok.tokenize("한국어") == ["한국", "##어"]


def test_lower_case_meta_lowers_and_strips_accents(tmp_path):
    sha = write_vocab(tmp_path, HAND_VOCAB)
    write_vocab(tmp_path, HAND_VOCAB, {"tokenizer": "wordpiece", "do_lower_case": True,
                                       "vocab_sha256": sha})
    tok = vocab.load_tokenizer(tmp_path)
    assert tok.do_lower_case is True
    assert tok.tokenize("ABCD") == ["abc", "##d"]
    assert vocab.bert_normalizer(True).normalize_str("Café") == "cafe"


def test_missing_vocab_file_is_named(tmp_path):
    with pytest.raises(vocab.VocabError, match=r"vocab file not found: .*nowhere.*vocab\.txt"):
        vocab.load_tokenizer(tmp_path / "nowhere" / "vocab.txt")


def test_missing_special_tokens_are_named(tmp_path):
    write_vocab(tmp_path, ["[PAD]", "[UNK]", "[SEP]", "한국"])
    with pytest.raises(vocab.VocabError, match=r"lacks special tokens \[CLS\], \[MASK\] "):
        vocab.load_tokenizer(tmp_path)


def test_meta_sha_mismatch_is_refused(tmp_path):
    write_vocab(tmp_path, HAND_VOCAB, {"tokenizer": "wordpiece", "vocab_sha256": "0" * 64})
    with pytest.raises(vocab.VocabError, match="does not match vocab.txt"):
        vocab.load_tokenizer(tmp_path)


def test_duplicate_token_is_refused_with_line(tmp_path):
    write_vocab(tmp_path, HAND_VOCAB + ["영화"])
    with pytest.raises(vocab.VocabError, match=r"vocab.txt:15: token '영화' repeats line 8"):
        vocab.load_tokenizer(tmp_path)
