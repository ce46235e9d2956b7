"""Tests for electra_ko.vocab: tokenizer loading and the vocab builder."""
import dataclasses
import hashlib
import json
import os
import random
import subprocess
import sys

import pytest

from electra_ko import vocab
from test_storage import plant_temporaries

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


# --------------------------------------------------------------------------- building

STEMS = ["영화", "배우", "연기", "음악", "장면", "감독", "주인공", "이야기", "시간", "극장"]
ENDINGS = ["가", "는", "를", "도", "의", "에서", "만", "까지"]
PREDICATES = ["좋았다", "지루했다", "최고였다", "아쉬웠다", "감동적이다", "재미있다"]


def korean_corpus(path, lines=400):
    """Deterministic review-like sentences; a blank line closes each 10-line document."""
    out = []
    for i in range(lines):
        words = [STEMS[(i * k + 3) % len(STEMS)] + ENDINGS[(i + k) % len(ENDINGS)]
                 for k in range(1, 2 + i % 4)]
        out.append(" ".join(words + [PREDICATES[i % len(PREDICATES)]]) + "\n")
        if i % 10 == 9:
            out.append("\n")
    path.write_text("".join(out), encoding="utf-8")
    return path


def build(tmp_path, name="out", **kwargs):
    corpus = kwargs.pop("corpus", None) or korean_corpus(tmp_path / "corpus.txt")
    kwargs.setdefault("heldout_lines", 20)
    kwargs.setdefault("num_unused", 3)
    out = tmp_path / name
    meta = vocab.build_vocab([str(corpus)], str(out), **kwargs)
    return meta, out


def test_temporaries_of_a_killed_build_are_removed_at_start(tmp_path, caplog):
    out = tmp_path / "out"
    plant_temporaries(str(out), [".vocab.txt.k1ll3d00.tmp", ".vocab_meta.json.k1ll3d00.tmp",
                                 ".spm.model.k1ll3d00.tmp", ".keep", ".notes.k1ll3d00.tmp"])
    build(tmp_path, vocab_size=150, min_frequency=1)
    assert sorted(os.listdir(out)) == [".keep", ".notes.k1ll3d00.tmp", "vocab.txt",
                                       "vocab_meta.json"]
    assert (f"removed what killed runs left in {out}: .spm.model.k1ll3d00.tmp, "
            ".vocab.txt.k1ll3d00.tmp, .vocab_meta.json.k1ll3d00.tmp") in caplog.text


def test_wordpiece_build_layout_and_meta(tmp_path):
    meta, out = build(tmp_path, vocab_size=150, min_frequency=1)
    tokens = (out / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(tokens) == 150
    assert tokens[:8] == SPECIALS + ["[unused0]", "[unused1]", "[unused2]"]
    assert meta["vocab_sha256"] == hashlib.sha256((out / "vocab.txt").read_bytes()).hexdigest()
    saved = json.loads((out / "vocab_meta.json").read_text(encoding="utf-8"))
    assert saved == meta
    assert (saved["tokenizer"], saved["do_lower_case"], saved["max_chars_per_word"],
            saved["vocab_size"], saved["training_lines"]) == ("wordpiece", False, 200, 150, 380)
    assert not (out / "spm.model").exists()
    tok = vocab.load_tokenizer(out)
    assert (tok.kind, tok.vocab_size, tok.vocab_sha256) == ("wordpiece", 150, meta["vocab_sha256"])


def test_canonical_order_is_independent_of_trainer_order():
    learned = ["##영화", "가", "영화", "##가", "한국", "##a", "a"]
    expected = ["a", "가", "##a", "##가", "영화", "한국", "##영화"]
    assert vocab.canonical_order(learned) == expected
    assert vocab.canonical_order(list(reversed(learned))) == expected


def tied_corpus(path):
    """Made-up three-syllable words, each exactly twice: most merge candidates tie."""
    rng = random.Random(7)
    syllables = [chr(0xAC00 + 28 * i) for i in range(40)]
    words = ["".join(rng.choice(syllables) for _ in range(3)) for _ in range(600)]
    path.write_text("".join(" ".join(words[i:i + 6]) + "\n" for i in range(0, 600, 6)) * 2,
                    encoding="utf-8")
    return path


def test_wordpiece_build_is_the_same_every_run(tmp_path):
    """The `tokenizers` trainer breaks ties between equally frequent merges by hash-map
    order; the vocab must not change from one build to the next."""
    corpus = tied_corpus(tmp_path / "tied.txt")
    builds = {build(tmp_path, name=f"out{i}", corpus=corpus, vocab_size=400)[0]["vocab_sha256"]
              for i in range(4)}
    assert len(builds) == 1


def test_limit_alphabet_keeps_the_most_frequent_characters_ties_by_code_point(tmp_path):
    syllables = [chr(0xAC00 + 28 * i) for i in range(12)]
    lines = [syllables[0] * 5, syllables[1] * 4, " ".join(syllables[2:])]  # 5 : 4 : 1 (x10)
    corpus = tmp_path / "alphabet.txt"
    corpus.write_text("\n".join(lines * 4) + "\n", encoding="utf-8")
    builds = [build(tmp_path, name=f"out{i}", corpus=corpus, vocab_size=60, limit_alphabet=6,
                    heldout_lines=0, min_frequency=1)[1] for i in range(3)]
    alphabets = {tuple(t for t in (b / "vocab.txt").read_text(encoding="utf-8").split("\n")
                       if len(t) == 1) for b in builds}
    assert alphabets == {tuple(syllables[:6])}  # the two frequent ones, then 4 ties by code point


def test_wordpiece_keeps_hangul_syllables_whole(tmp_path):
    _, out = build(tmp_path, vocab_size=150, min_frequency=1)
    tok = vocab.load_tokenizer(out)
    for word in ["주인공까지", "감동적이다", "극장에서"]:
        pieces = tok.tokenize(word)
        assert "[UNK]" not in pieces
        assert "".join(p.removeprefix("##") for p in pieces) == word


def test_lower_case_build_lowers_vocab_and_input(tmp_path):
    corpus = tmp_path / "mixed.txt"
    corpus.write_text("".join(f"Movie {STEMS[i % 10]}가 GOOD\n" for i in range(60)),
                      encoding="utf-8")
    meta, out = build(tmp_path, corpus=corpus, vocab_size=80, min_frequency=1,
                      do_lower_case=True, heldout_lines=5)
    tokens = (out / "vocab.txt").read_text(encoding="utf-8").split()
    assert meta["do_lower_case"] is True
    assert not any(ch.isupper() for tok in tokens[8:] for ch in tok)
    tok = vocab.load_tokenizer(out)
    assert tok.do_lower_case is True
    assert tok.tokenize("MOVIE") == tok.tokenize("movie") == ["movie"]


def test_sentencepiece_build_special_ids_and_pieces(tmp_path):
    meta, out = build(tmp_path, tokenizer="sentencepiece", vocab_size=60)
    tok = vocab.load_tokenizer(out)
    assert (tok.kind, tok.vocab_size, meta["max_chars_per_word"]) == ("sentencepiece", 60, None)
    assert tok.special_ids == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert tok.tokens[5:8] == ["[unused0]", "[unused1]", "[unused2]"]
    assert (out / "spm.model").exists()
    ids = tok.encode_batch(["영화가 좋았다 [CLS] [SEP] [MASK] [unused0]", "배우는 최고였다"])
    assert all(i == 1 or i > 7 for seq in ids for i in seq)
    assert "".join(tok.tokenize("배우는 최고였다")).replace("▁", " ").strip() == "배우는 최고였다"


def test_sentencepiece_model_of_another_type_has_no_pipeline(tmp_path):
    from sentencepiece import sentencepiece_model_pb2

    _, out = build(tmp_path, tokenizer="sentencepiece", vocab_size=60)
    model = sentencepiece_model_pb2.ModelProto.FromString((out / "spm.model").read_bytes())
    model.trainer_spec.model_type = sentencepiece_model_pb2.TrainerSpec.CHAR
    with pytest.raises(vocab.VocabError, match="spm.model: a CHAR model; only unigram and bpe"):
        vocab.sentencepiece_pipeline(model.SerializeToString())


def test_heldout_split_is_evenly_spaced():
    split = vocab.HeldoutSplit(total_lines=10, heldout_lines=3)
    lines = [f"line{i}" for i in range(10)]
    assert split.heldout(lines) == ["line0", "line3", "line6"]
    assert list(split.training(lines)) == [f"line{i}" for i in (1, 2, 4, 5, 7, 8, 9)]
    assert split.training_lines == 7


def test_heldout_report_counts_by_hand(tmp_path):
    write_vocab(tmp_path, HAND_VOCAB)
    tok = vocab.load_tokenizer(tmp_path)
    # 한국|##어 영화|##가 -> 4 tokens / 2 eojeols; 좋|##다|. xyz -> 3 + [UNK] over 2 eojeols
    report = vocab.heldout_report(tok, ["한국어 영화가", "좋다. xyz"])
    assert report == {"heldout_lines": 2, "eojeols": 4, "tokens": 8, "unk_tokens": 1,
                      "unk_rate": 1 / 8, "tokens_per_eojeol": 2.0}


def test_build_report_uses_only_heldout_lines(tmp_path):
    corpus = tmp_path / "c.txt"
    lines = ["영화 좋았다", "배우 연기", "음악", "장면 최고 감동", "시간"] * 4
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta, _ = build(tmp_path, corpus=corpus, vocab_size=60, min_frequency=1, heldout_lines=4,
                    num_unused=0)
    # stride 5 over 20 lines holds out lines 0, 5, 10, 15: all "영화 좋았다"
    assert meta["training_lines"] == 16
    assert (meta["report"]["heldout_lines"], meta["report"]["eojeols"]) == (4, 8)


def test_undecodable_lines_are_skipped_and_counted(tmp_path):
    corpus = tmp_path / "bad.txt"
    good = "".join(f"{STEMS[i % 10]}가 좋았다\n" for i in range(30))
    corpus.write_bytes(good.encode("utf-8") + b"\xff\xfe broken\n")
    meta, _ = build(tmp_path, corpus=corpus, vocab_size=60, min_frequency=1, heldout_lines=3)
    assert (meta["undecodable_lines"], meta["training_lines"]) == (1, 27)


def test_missing_input_is_named(tmp_path):
    with pytest.raises(vocab.VocabError, match=r"input not found: .*absent\.txt"):
        vocab.build_vocab([str(tmp_path / "absent.txt")], str(tmp_path / "out"))


def test_empty_corpus_is_refused(tmp_path):
    corpus = tmp_path / "empty.txt"
    corpus.write_text("\n  \n\n", encoding="utf-8")
    with pytest.raises(vocab.VocabError, match="empty corpus"):
        build(tmp_path, corpus=corpus)


def test_vocab_size_too_small_for_reserved_tokens(tmp_path):
    with pytest.raises(vocab.VocabError, match=r"--vocab_size=205 .* take 205 ids"):
        build(tmp_path, vocab_size=205, num_unused=200)


def test_alphabet_larger_than_vocab_size_is_refused(tmp_path):
    with pytest.raises(vocab.VocabError, match="alphabet alone needs .* --limit_alphabet"):
        build(tmp_path, vocab_size=20)


def test_heldout_must_leave_training_lines(tmp_path):
    with pytest.raises(vocab.VocabError, match="lower --heldout_lines"):
        build(tmp_path, heldout_lines=400)


def test_sentencepiece_too_large_vocab_is_explained(tmp_path):
    with pytest.raises(vocab.VocabError, match="SentencePiece training failed: .*too high"):
        build(tmp_path, tokenizer="sentencepiece", vocab_size=5000)


def test_gcs_build_and_load(tmp_path, gcs_emulator):
    from electra_ko import storage

    corpus = korean_corpus(tmp_path / "corpus.txt")
    remote_corpus = f"gs://{gcs_emulator}/vocab_test/corpus.txt"
    storage.write_text(remote_corpus, corpus.read_text(encoding="utf-8"))
    remote_dir = f"gs://{gcs_emulator}/vocab_test/vocab"
    meta = vocab.build_vocab([remote_corpus], remote_dir, vocab_size=120, min_frequency=1,
                             num_unused=3, heldout_lines=20)
    vocab_bytes = storage.open_read(remote_dir + "/vocab.txt", binary=True).read()
    assert meta["vocab_sha256"] == hashlib.sha256(vocab_bytes).hexdigest()
    assert (meta["training_lines"], meta["report"]["heldout_lines"]) == (380, 20)
    tok = vocab.load_tokenizer(remote_dir)
    assert (tok.vocab_size, tok.vocab_sha256) == (120, meta["vocab_sha256"])
    assert "".join(p.removeprefix("##") for p in tok.tokenize("배우의")) == "배우의"


# --------------------------------------------------------------------------- CLI


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "electra_ko.vocab", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_cli_builds_and_prints_report(tmp_path):
    corpus = korean_corpus(tmp_path / "corpus.txt")
    result = run_cli("--corpus", str(corpus), "--output_dir", str(tmp_path / "v"),
                     "--vocab_size", "150", "--min_frequency", "1", "--num_unused", "3",
                     "--heldout_lines", "20")
    assert result.returncode == 0, result.stderr
    assert "wordpiece vocab of 150 tokens" in result.stdout
    assert "held-out report (20 lines" in result.stdout
    assert vocab.load_tokenizer(tmp_path / "v").vocab_size == 150


def test_cli_reports_bad_input_without_traceback(tmp_path):
    """(Through --input, --corpus's name before 0.2, which still works.)"""
    result = run_cli("--input", str(tmp_path / "absent.txt"), "--output_dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: input not found: {tmp_path / 'absent.txt'}"


@pytest.mark.parametrize("over_old_build", [False, True])
@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece"])
@pytest.mark.parametrize("killed_at", ["spm.model", "vocab_meta.json", "vocab.txt"])
def test_a_build_killed_between_files_leaves_no_loadable_vocab(tmp_path, monkeypatch, kind,
                                                               killed_at, over_old_build):
    """A fresh folder is refused (before: a vocab.txt without its meta loaded silently as
    cased WordPiece); over an older build, the old build stays intact or is refused."""
    if kind == "wordpiece" and killed_at == "spm.model":
        pytest.skip("WordPiece writes no spm.model")
    old_size, new_size = (120, 150) if kind == "wordpiece" else (63, 66)
    old_sha = None
    if over_old_build:
        build(tmp_path, tokenizer=kind, vocab_size=old_size, min_frequency=1)
        old_sha = vocab.load_tokenizer(tmp_path / "out").vocab_sha256
    real_writer, real_write_text = vocab.storage.atomic_writer, vocab.storage.write_text

    def killing_writer(path, *args, **kwargs):
        if str(path).endswith(killed_at):
            raise KeyboardInterrupt(f"killed while writing {killed_at}")
        return real_writer(path, *args, **kwargs)

    def killing_write_text(path, text):
        if str(path).endswith(killed_at):
            raise KeyboardInterrupt(f"killed while writing {killed_at}")
        return real_write_text(path, text)
    monkeypatch.setattr(vocab.storage, "atomic_writer", killing_writer)
    monkeypatch.setattr(vocab.storage, "write_text", killing_write_text)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, tokenizer=kind, vocab_size=new_size, min_frequency=1)
    monkeypatch.undo()
    if not over_old_build:
        with pytest.raises(vocab.VocabError, match="not found"):
            vocab.load_tokenizer(tmp_path / "out")
        return
    try:
        tok = vocab.load_tokenizer(tmp_path / "out")
    except vocab.VocabError:
        return  # refused: fine
    assert tok.vocab_sha256 == old_sha and tok.vocab_size == old_size  # the old build, intact


def test_ensure_vocab_builds_once_then_checks_the_recorded_settings(tmp_path):
    korean_corpus(tmp_path / "corpus.txt")
    settings = vocab.VocabSettings(vocab_size=150, min_frequency=1, num_unused=3)
    path = str(tmp_path / "v" / "vocab.txt")
    tokenizer, recorded = vocab.ensure_vocab(path, [str(tmp_path / "corpus*.txt")], settings)
    assert (tokenizer.vocab_size, recorded) == (150, True)
    assert vocab.ensure_vocab(path, [], settings)[0].vocab_sha256 == tokenizer.vocab_sha256
    assert vocab.ensure_vocab(path, [], dataclasses.replace(settings, vocab_size=99),
                              check_size=False)[1]
    with pytest.raises(vocab.VocabError, match=r"v/vocab\.txt was built with other vocab settings "
                                               r"\(num_unused=3 there, 4 wanted\)"):
        vocab.ensure_vocab(path, [], dataclasses.replace(settings, num_unused=4))
    published = tmp_path / "published.txt"
    published.write_text("\n".join(vocab.SPECIAL_TOKENS.values()) + "\n가\n", encoding="utf-8")
    assert vocab.ensure_vocab(str(published), [], settings)[1] is False
