"""Tests for electra_ko.serving: in-graph tokenisation equals the training tokenizer."""
import hashlib
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from electra_ko import serving, tasks, vocab
from test_checkpoints import export_flags

REPO = pathlib.Path(__file__).resolve().parents[1]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["오늘", "날씨", "##가", "##네요", "좋", "영화", "진짜", "##합니다", "iPhone", "##ro",
         "배터리", "12", "##500", "원", "ㅋㅋ", "##ㅋㅋ", "웃겨", "漢", "字", "##😀"]
UNKNOWN_CHARS = "뷁궯"

# Korean text as users type it: numbers, Latin words, emoji, laughter runs, control and
# format characters, odd whitespace, CJK ideographs (incl. block edges), unknown syllables.
SENTENCES = [
    "오늘 날씨가 정말 좋네요 ㅎㅎㅎㅎㅎ",
    "가격은 12,500원이고 배송비 3000원 별도입니다.",
    "iPhone 15 Pro를 샀는데 배터리가 금방 닳아요!!",
    "이 영화 진짜 최고😀😀 👍🏻 강추합니다",
    "ㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ 너무 웃겨",
    "제어\x01문자\x7f와\u200b폭없는\ufeff공백\x00끝\ufffd",
    "탭\t줄바꿈\n캐리지\r리턴 그리고\u00a0비분리\u3000전각\x0c폼피드\x0b수직탭\x85다음줄",
    "韓國語와 漢字가 섞인 文章입니다",
    "경계 \U0002B81F\U0002B820\U0002B920 \uF900\u4E00\u9FFF\u3400끝",
    "이모지 조합 👨\u200d👩\u200d👧 가족 그리고 사설 영역 \ue000 문자",
    "괄호(안에) [CLS] 특수 토큰 흉내 #해시태그 @멘션 ~물결~ a_b",
    "Café naïve résumé 그대로 둡니다",
    "₩5,000 ™ ° ½ ①② ＡＢＣ１２３ 。、「인용」",
    "뷁 같은 모르는 글자와 궯궯궯 반복",
    "한글 자모 분해형 \u1112\u1161\u11ab 와 채움 문자 ㅤ 와 \uffa0",
    "",
    "   \t  ",
    "가" * 200,
    "가" * 201,
    "a" * 250 + " 다음 단어",
    "😀" * 200,
    "😀" * 201,
    "영화" * 100 + "!",
]


def write_vocab(directory, tokens, do_lower_case=None):
    directory.mkdir(parents=True, exist_ok=True)
    text = "".join(tok + "\n" for tok in tokens)
    (directory / "vocab.txt").write_text(text, encoding="utf-8")
    if do_lower_case is not None:
        meta = {"tokenizer": "wordpiece", "do_lower_case": do_lower_case,
                "vocab_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
        (directory / "vocab_meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return directory


def vocab_covering(sentences, unknown_chars=UNKNOWN_CHARS):
    """Every character (and its ## form) of the sentences except a few left unknown."""
    chars = sorted({c for s in sentences for c in s if not c.isspace()} - set(unknown_chars))
    pieces = chars + ["##" + c for c in chars] + WORDS
    return SPECIALS + [f"[unused{i}]" for i in range(3)] + list(dict.fromkeys(pieces))


@pytest.fixture(scope="module")
def korean_vocab(tmp_path_factory):
    return write_vocab(tmp_path_factory.mktemp("vocab"), vocab_covering(SENTENCES))


@pytest.fixture(scope="module")
def in_graph(korean_vocab):
    return serving.InGraphTokenizer(korean_vocab, max_seq_length=16)


def test_in_graph_ids_equal_training_tokenizer(korean_vocab, in_graph):
    expected = vocab.load_tokenizer(korean_vocab).encode_batch(SENTENCES)
    got = in_graph.tokenize(tf.constant(SENTENCES)).to_list()
    mismatches = [(s[:40], e, g) for s, e, g in zip(SENTENCES, expected, got) if e != g]
    assert not mismatches
    assert any(vocab.load_tokenizer(korean_vocab).special_ids["unk"] in ids for ids in expected)


def test_words_over_the_char_limit_are_one_unk(in_graph):
    unk = in_graph.special_ids["unk"]
    ids = in_graph.tokenize(tf.constant(["가" * 201, "😀" * 201, "가" * 200])).to_list()
    assert ids[0] == [unk] and ids[1] == [unk]
    assert len(ids[2]) == 200 and unk not in ids[2]


def test_lower_case_vocab_lowers_and_strips_accents_like_training(tmp_path):
    sentences = ["HELLO Wörld ÀÉÎ Çava", "Straße İstanbul ΣΟΦΙΑ", "한국어 ABC는 그대로"]
    lowered = [s.lower() for s in sentences]
    tokens = vocab_covering(sentences + lowered + ["cafe aeiou c"], unknown_chars="")
    vocab_dir = write_vocab(tmp_path, tokens, do_lower_case=True)
    expected = vocab.load_tokenizer(vocab_dir).encode_batch(sentences)
    got = serving.InGraphTokenizer(vocab_dir, 8).tokenize(tf.constant(sentences)).to_list()
    assert got == expected


@pytest.mark.parametrize("pairs", [False, True])
def test_features_equal_fine_tuning_encoding(korean_vocab, in_graph, pairs):
    texts_a = SENTENCES[:8] + ["짧다"]
    texts_b = list(reversed(SENTENCES[:8])) + ["가" * 30] if pairs else None
    expected = tasks.encode(vocab.load_tokenizer(korean_vocab), texts_a, texts_b, 16)
    features = in_graph(tf.constant(texts_a), tf.constant(texts_b) if pairs else None)
    for name in ["input_ids", "input_mask", "segment_ids"]:
        assert features[name].dtype == tf.int32
        np.testing.assert_array_equal(features[name].numpy(), expected[name], err_msg=name)


def test_max_seq_length_below_three_is_refused(korean_vocab):
    with pytest.raises(ValueError, match="max_seq_length must be at least 3"):
        serving.InGraphTokenizer(korean_vocab, max_seq_length=2)


# --------------------------------------------------------------------------- SavedModel

RELOAD_SCRIPT = """
import json, sys
import tensorflow as tf
import tensorflow_text  # registers the tokenizer ops the graph uses
requests = json.loads(sys.stdin.read())
answers = {}
for path, texts in requests.items():
    loaded = tf.saved_model.load(path)
    single = loaded.signatures["serving_default"](text=tf.constant(texts))
    pairs = loaded.signatures["serve_pairs"](text_a=tf.constant(texts),
                                             text_b=tf.constant(texts[::-1]))
    answers[path] = {"single": {k: v.numpy().tolist() for k, v in single.items()},
                     "pairs": {k: v.numpy().tolist() for k, v in pairs.items()}}
print(json.dumps(answers, default=lambda b: b.decode("utf-8")))
"""


def fresh_process():
    """A new Python process that will load SavedModels as TF Serving would (nothing shared
    with this one); started early, it imports TensorFlow while the exports are written."""
    return subprocess.Popen([sys.executable, "-c", RELOAD_SCRIPT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def served_by(process, requests):
    """{SavedModel dir: texts} -> the outputs of its signatures, computed by `process`."""
    stdout, stderr = process.communicate(json.dumps(requests), timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout)


def random_weights(model, seed):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        offset = 1.0 if variable.path.endswith("gamma") else 0.0
        variable.assign(offset + 0.2 * rng.standard_normal(variable.shape).astype(np.float32))
    return model


def tiny_tower(kind, vocab_dir, labels=None):
    from electra_ko import architecture, checkpoints

    config = architecture.EncoderConfig(
        vocab_size=vocab.load_tokenizer(vocab_dir).vocab_size, hidden_size=32,
        num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, embedding_size=16,
        max_position_embeddings=32)
    model = random_weights(checkpoints.build_model(kind, config, labels), seed=3)
    return model, checkpoints.tower_from_model(kind, model, labels)


def keras_features(vocab_dir, texts_a, texts_b=None):
    encoded = tasks.encode(vocab.load_tokenizer(vocab_dir), texts_a, texts_b, 16)
    return {k: tf.constant(encoded[k]) for k in ("input_ids", "input_mask", "segment_ids")}


LABELS = ("부정", "긍정", "중립")
CLASSIFIER_TEXTS, DISCRIMINATOR_TEXTS = SENTENCES[:6], SENTENCES[:4]


@pytest.fixture(scope="module")
def served(tmp_path_factory, korean_vocab):
    """A classifier exported the way the CLI does it (Hugging Face dir -> SavedModel) and a
    discriminator written directly, both answered by one fresh process.
    Yields {kind: (Keras model, outputs of the reloaded SavedModel)}."""
    from electra_ko import export

    process = fresh_process()
    out = tmp_path_factory.mktemp("saved_models")
    classifier, tower = tiny_tower("classifier", korean_vocab, LABELS)
    export.write_huggingface(tower, korean_vocab, out / "hf")
    export.run(export_flags(model_dir=str(out / "hf"), format="saved_model",
                            output_dir=str(out / "classifier"), max_seq_length=16))
    discriminator, tower = tiny_tower("discriminator", korean_vocab)
    export.write_saved_model(tower, korean_vocab, str(out / "discriminator"), max_seq_length=16)
    answers = served_by(process, {str(out / "classifier"): CLASSIFIER_TEXTS,
                                  str(out / "discriminator"): DISCRIMINATOR_TEXTS})
    return {"classifier": (classifier, answers[str(out / "classifier")]),
            "discriminator": (discriminator, answers[str(out / "discriminator")])}


def test_classifier_saved_model_predicts_like_keras_in_a_fresh_process(served, korean_vocab):
    model, answer = served["classifier"]
    texts = CLASSIFIER_TEXTS
    for key, texts_b in (("single", None), ("pairs", texts[::-1])):
        expected = tf.nn.softmax(model(keras_features(korean_vocab, texts, texts_b))).numpy()
        np.testing.assert_allclose(answer[key]["probabilities"], expected, atol=1e-5)
        assert answer[key]["label_names"] == [list(LABELS)] * len(texts)
        assert answer[key]["predicted_label"] == [LABELS[i] for i in expected.argmax(-1)]
    # different texts get different answers: the served graph really reads its input
    assert np.ptp(np.asarray(answer["single"]["probabilities"])[:, 0]) > 1e-3


def test_discriminator_saved_model_scores_each_token(served, korean_vocab):
    model, answer = served["discriminator"]
    features = keras_features(korean_vocab, DISCRIMINATOR_TEXTS)
    mask = features["input_mask"].numpy()
    expected = tf.sigmoid(model(features)).numpy() * mask
    np.testing.assert_array_equal(answer["single"]["input_ids"], features["input_ids"].numpy())
    np.testing.assert_allclose(answer["single"]["replaced_probability"], expected, atol=1e-5)


def test_generator_has_no_serving_signature(korean_vocab, in_graph):
    model, _ = tiny_tower("generator", korean_vocab)
    with pytest.raises(ValueError, match="export the discriminator or a fine-tuned classifier"):
        serving.ServingModule(in_graph, model, "generator")
