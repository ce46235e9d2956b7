"""fast_wordpiece: id-for-id parity with the `tokenizers` pipeline, whatever the text."""
import random

import numpy as np
import pytest
import tokenizers

from electra_ko import fast_wordpiece, vocab

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HAND_TOKENS = SPECIALS + [
    "영화", "##가", "##는", "정말", "재미", "##있", "##다", "##었", "최고", "##의", "배우",
    "연기", "##력", "좋", "##아", "##요", "ㅋ", "##ㅋ", "ㅠ", "##ㅠ", "가", "나", "##나",
    ".", ",", "!", "?", "~", "^", "(", ")", "\"", "'", "-", "#", "##1", "1", "2", "##0", "10",
    "점", "##점", "movie", "##s", "good", "m", "##o", "##v", "##ie", "a", "##a", "ab", "##b",
    "一", "中", "국", "😀", "a" * 30, "##" + "b" * 30, "Ab", "##C", "é", "##é", "e"]

EDGE_LINES = [
    "영화가 정말 재미있었다.",
    "연기력 최고!!! 10점 만점에 10점",
    "ㅋㅋㅋㅋ ㅠㅠ 좋아요~^^",
    "movies good, abab (괄호) \"인용\" 'a'",
    "",
    "  앞뒤 공백  ",
    "두  칸   띄어쓰기",
    "탭\t섞인\t줄",
    "전각\u3000공백과\u00a0줄바꿈없는공백",
    "제어\x00문자\x07와 \ufffd 대체문자",
    "中国 영화一部 한자",
    "이모지😀가 들어간 😀 줄",
    "a" * 201 + " 긴단어 " + "가" * 200 + " " + "가" * 201,
    "a" * 30 + "b" * 30 + " " + "a" * 31,
    "##가 #1 ##",
    "é와 e\u0301 조합문자 Ab AbC ABC",
    "\u200b폭없는 공백\u2028줄구분",
    " ",
    "\t",
    "끝.",
]


def write_vocab(directory, tokens, do_lower_case=None):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    if do_lower_case is not None:
        import hashlib
        import json

        sha = hashlib.sha256((directory / "vocab.txt").read_bytes()).hexdigest()
        (directory / "vocab_meta.json").write_text(json.dumps(
            {"tokenizer": "wordpiece", "do_lower_case": do_lower_case, "vocab_sha256": sha}))
    return vocab.load_tokenizer(directory)


def reference(tokenizer, lines):
    """The plain path: Rust `encode_batch`, flattened."""
    id_lists = tokenizer.encode_batch(lines)
    flat = [i for ids in id_lists for i in ids]
    return np.array(flat, dtype=np.int64), np.cumsum([0] + [len(ids) for ids in id_lists])


def assert_same_ids(tokenizer, lines):
    ids, offsets = tokenizer.encode_corpus(lines)
    want_ids, want_offsets = reference(tokenizer, lines)
    np.testing.assert_array_equal(offsets, want_offsets)
    np.testing.assert_array_equal(ids, want_ids)
    assert ids.dtype == np.int32


def random_lines(seed, pieces, count):
    """Lines glued from text fragments with random separators, so words, punctuation
    and odd characters meet in every combination."""
    rng = random.Random(seed)
    glue = [" ", " ", " ", "", "", "  ", "\t", "\u3000", ".", "!", "😀", "\x00", "中"]
    return ["".join(rng.choice(pieces) + rng.choice(glue) for _ in range(rng.randint(0, 12)))
            for _ in range(count)]


@pytest.fixture(scope="module")
def hand_tokenizer(tmp_path_factory):
    return write_vocab(tmp_path_factory.mktemp("hand"), HAND_TOKENS)


@pytest.fixture(scope="module")
def trained_tokenizer(tmp_path_factory):
    """A real learned vocab, from text this test writes."""
    lines = random_lines(1, [line for line in EDGE_LINES if line.strip()] + [
        "이 영화는 배우들의 연기가 훌륭했다", "다시 보고 싶은 영화", "시간 가는 줄 몰랐다",
        "결말이 아쉽지만 음악은 좋았다", "Korean cinema 2024"], 3000)
    pipeline = vocab.wordpiece_pipeline({}, do_lower_case=False)
    trainer = tokenizers.trainers.WordPieceTrainer(vocab_size=400, special_tokens=SPECIALS,
                                                   show_progress=False)
    pipeline.train_from_iterator(lines, trainer)
    learned = [t for t in pipeline.get_vocab() if t not in SPECIALS]
    return write_vocab(tmp_path_factory.mktemp("trained"), SPECIALS + sorted(learned))


def test_edge_lines_match_the_rust_pipeline(hand_tokenizer):
    assert_same_ids(hand_tokenizer, EDGE_LINES)


def test_each_edge_line_alone_matches(hand_tokenizer):
    for line in EDGE_LINES:
        assert_same_ids(hand_tokenizer, [line])


def test_random_text_matches_with_a_learned_vocab(trained_tokenizer):
    fragments = [w for line in EDGE_LINES for w in line.split(" ")] + ["영화", "연기", "좋았다"]
    assert_same_ids(trained_tokenizer, random_lines(2, fragments, 2000))


def test_repeated_blocks_reuse_character_classes(hand_tokenizer):
    lines = random_lines(3, EDGE_LINES, 300)
    assert_same_ids(hand_tokenizer, lines[:150])
    assert_same_ids(hand_tokenizer, lines[150:])


def test_unknown_words_and_length_limit():
    tokens = SPECIALS + ["가", "##나"]
    pipeline = vocab.wordpiece_pipeline({t: i for i, t in enumerate(tokens)}, False)
    encoder = fast_wordpiece.CorpusEncoder(pipeline, tokens, unk_id=1, max_chars_per_word=4)
    ids, offsets = encoder.encode(["가나 나가 가나나나 가나나나나 가.나", ""])
    # 가|##나, 나가 -> UNK, 4 characters pass, 5 do not, "." and a word-initial 나 are unknown
    assert ids.tolist() == [5, 6, 1, 5, 6, 6, 6, 1, 5, 1, 1]
    assert offsets.tolist() == [0, 11, 11]


def test_empty_input(hand_tokenizer):
    ids, offsets = hand_tokenizer.encode_corpus(["", ""])
    assert len(ids) == 0 and offsets.tolist() == [0, 0, 0]
    ids, offsets = hand_tokenizer.encode_corpus([])
    assert len(ids) == 0 and offsets.tolist() == [0]


def test_hash_collisions_never_change_ids(hand_tokenizer, monkeypatch):
    """With base 1 a hash is the sum of code points: "가나" and "나가" collide, as do
    many vocab entries and units. Every such merge must be caught and repaired."""
    monkeypatch.setattr(fast_wordpiece, "_HASH_BASE", 1)
    lines = EDGE_LINES + ["가나 나가 나가가 가나나", "ab ba aab aba", "10 01 1 0",
                          "가나나가 나가가나 가가나나 나나가가", "abba baab aabb bbaa 가나나가"]
    assert_same_ids(write_vocab_copy(hand_tokenizer), lines)


def test_exact_keys_of_short_units_and_hashed_keys_of_long_ones(hand_tokenizer, monkeypatch):
    """Units of 1-3 characters are grouped by their packed code points, longer ones by
    hash: with base 1 every anagram of 4+ characters collides, yet no 3-character unit
    may be merged with another (its key holds the characters themselves)."""
    monkeypatch.setattr(fast_wordpiece, "_HASH_BASE", 1)
    tokenizer = write_vocab_copy(hand_tokenizer)
    units = ["가", "나", "가나", "나가", "가가나", "가나가", "나가가", "가나나가", "나가가나",
             "ab", "ba", "aab", "aba", "baa", "abab", "baba", "a" * 30, "a" * 31]
    rng = random.Random(4)
    assert_same_ids(tokenizer, [" ".join(rng.choice(units) for _ in range(8)) for _ in range(200)])
    code_points = np.array([ord(c) for c in "가나다라"], dtype=np.uint32)
    keys = fast_wordpiece._unit_keys(code_points, np.array([0, 0, 1, 0]), np.array([1, 3, 3, 4]),
                                     np.zeros(4, dtype=np.uint64))
    packed = [(ord("가") + 1), (ord("가") + 1) | (ord("나") + 1) << 21 | (ord("다") + 1) << 42,
              (ord("나") + 1) | (ord("다") + 1) << 21 | (ord("라") + 1) << 42, 1 << 63]
    assert keys.tolist() == packed


def test_factorize_groups_equal_keys_through_probe_chains():
    """Keys built to share one slot (k, k + d/M for the slot multiplier M) must probe past
    each other; the codes must split the keys exactly as np.unique does."""
    inverse = pow(int(fast_wordpiece._SLOT_MULTIPLIER), -1, 1 << 64)
    base = 0x1234_5678_9ABC
    same_slot = [(base + d * inverse) % (1 << 64) for d in range(6)]
    slots = fast_wordpiece._slot_of(np.array(same_slot, dtype=np.uint64), np.uint64(64 - 10))
    assert len(set(slots.tolist())) == 1
    rng = np.random.default_rng(3)
    others = rng.integers(1, 1 << 63, size=40, dtype=np.uint64)
    keys = np.array(same_slot + others.tolist(), dtype=np.uint64)[rng.integers(0, 46, size=300)]
    assert len(keys) < 512  # so _factorize's table has 2**10 slots, as assumed above
    codes, num_groups = fast_wordpiece._factorize(keys)
    uniques, expected = np.unique(keys, return_inverse=True)
    assert num_groups == len(uniques)
    assert len(set(zip(codes.tolist(), expected.tolist()))) == num_groups  # one-to-one
    assert sorted(set(codes.tolist())) == list(range(num_groups))


def test_vocab_lookup_follows_probe_chains(trained_tokenizer):
    """Every prefix key is found, including those sitting past their home slot, and keys
    of no prefix are reported as such."""
    powers = fast_wordpiece._HashPowers()
    table = fast_wordpiece._VocabTable(trained_tokenizer.tokens, "##", powers)
    keys, values = table._prefix_keys(powers)
    home = fast_wordpiece._slot_of(keys, table._shift)
    assert (table._slot_key[home] != keys).sum() >= 5  # probing really happens
    np.testing.assert_array_equal(table.lookup(keys), values)
    absent = np.setdiff1d(np.concatenate((keys + np.uint64(1), keys * np.uint64(3))), keys)
    assert (table.lookup(absent) == table.NOT_A_PREFIX).all()


def test_one_encoder_over_many_blocks_matches(hand_tokenizer):
    """The data builder reuses one encoder for every block: words seen in one block and
    again in later ones, unknown characters first met late, words at the length limit."""
    limit = vocab.MAX_CHARS_PER_WORD
    blocks = [["영화가 정말 재미있었다.", "가" * limit + " " + "가" * (limit + 1)],
              ["영화가 정말 재미있었다.", "처음보는글자 ☃ 눈사람", "a" * limit + "!"],
              ["☃☃ 눈사람 영화가", "가" * (limit + 1) + " " + "가" * limit, "a" * (limit + 1)]]
    tokenizer = write_vocab_copy(hand_tokenizer)
    for block in blocks:
        assert_same_ids(tokenizer, block)
    ids, _ = tokenizer.encode_corpus(["가" * limit, "가" * (limit + 1)])
    ga, continued = tokenizer.tokens.index("가"), tokenizer.tokens.index("##가")
    assert ids.tolist() == [ga] + [continued] * (limit - 1) + [tokenizer.special_ids["unk"]]


def test_one_character_lookups_by_table(hand_tokenizer):
    """The table answers one-character keys exactly as the hash table does."""
    table = write_vocab_copy(hand_tokenizer)
    table.encode_corpus(["가"])
    vocab_table = table._corpus_encoder._vocab
    chars = np.array([ord(c) for c in "가나ㅋ.a中😀é국Z"], dtype=np.uint32)
    for is_start in (True, False):
        keys = chars.astype(np.uint64) + np.uint64(1)
        if not is_start:
            keys += fast_wordpiece._CONTINUATION_SALT
        np.testing.assert_array_equal(
            vocab_table.lookup_char(chars, np.full(len(chars), is_start)), vocab_table.lookup(keys))


def write_vocab_copy(tokenizer):
    """A fresh tokenizer (its encoder is built lazily, after the monkeypatch)."""
    return vocab.WordPieceTokenizer(tokenizer.tokens, tokenizer.special_ids,
                                    tokenizer.vocab_sha256, tokenizer.do_lower_case)


def test_lower_casing_vocab_matches(tmp_path):
    tokens = SPECIALS + ["movie", "good", "##s", "e", "##e", "a", "##b", "가", "##나", "."]
    tokenizer = write_vocab(tmp_path, tokens, do_lower_case=True)
    assert_same_ids(tokenizer, EDGE_LINES + ["MOVIES Good. Éé e\u0301 가나 ÀB"])
