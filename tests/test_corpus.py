"""Tests for electra_ko.corpus (cleaning, readers, stats, CLI) and electra_ko.sentences."""
import dataclasses
import json
import logging
import os
import random
import subprocess
import sys
import time
import unicodedata
import uuid

import pytest

from electra_ko import corpus
from electra_ko.corpus import CorpusError, CorpusOptions, clean_line, drop_reason, normalize_text
from electra_ko.sentences import split_sentences
from test_storage import plant_temporaries

DEFAULTS = CorpusOptions()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def only(**switches):
    """Options with every rewriting rule off except the ones named."""
    off = dict(nfc=False, filter_chars=False, remove_urls=False, remove_emails=False,
               phone="keep", max_repeat=0, squeeze_whitespace=False)
    return dataclasses.replace(DEFAULTS, **{**off, **switches})


def write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


# ----------------------------------------------------------------------------- cleaning rules

def test_nfc_composes_hangul_jamo():
    decomposed = unicodedata.normalize("NFD", "한국어 문장")
    assert len(decomposed) == 15
    assert normalize_text(decomposed, only(nfc=True)) == "한국어 문장"
    assert normalize_text(decomposed, only()) == decomposed


def test_character_filter_keeps_hangul_ascii_punctuation_and_optionally_emoji():
    text = "漢字 표기와 café「인용」…ㅋㅋ 😀♥"
    assert normalize_text(text, only(filter_chars=True)) == "표기와 caf 「인용」…ㅋㅋ 😀♥"
    no_emoji = only(filter_chars=True, keep_emoji=False, squeeze_whitespace=True)
    assert normalize_text(text, no_emoji) == "표기와 caf 「인용」…ㅋㅋ ♥"


def test_urls_are_removed_up_to_hangul_or_trailing_punctuation():
    rule = only(remove_urls=True, squeeze_whitespace=True)
    assert normalize_text("자세한 내용은 https://example.com/a?q=1&x=2 에서 보세요.", rule) \
        == "자세한 내용은 에서 보세요."
    assert normalize_text("www.naver.com에서 봤고 blog.example.kr/post/12 도 봤다", rule) \
        == "에서 봤고 도 봤다"
    assert normalize_text("주소는 http://a.kr/x. 끝", rule) == "주소는 . 끝"
    assert normalize_text("버전 3.14 와 Node.js 는 그대로", rule) == "버전 3.14 와 Node.js 는 그대로"


def test_emails_are_removed():
    rule = only(remove_emails=True, squeeze_whitespace=True)
    assert normalize_text("문의는 help.desk@example.co.kr 로 보내주세요", rule) == "문의는 로 보내주세요"


@pytest.mark.parametrize("mode, expected", [
    ("mask", "전화 [PHONE] 또는 [PHONE] , 상담 [PHONE] 가격 1234567원 2024-01-15"),
    ("remove", "전화 또는 , 상담 가격 1234567원 2024-01-15"),
    ("keep", "전화 010-1234-5678 또는 02-123-4567, 상담 1588-1234 가격 1234567원 2024-01-15"),
])
def test_phone_numbers_are_masked_removed_or_kept(mode, expected):
    text = "전화 010-1234-5678 또는 02-123-4567, 상담 1588-1234 가격 1234567원 2024-01-15"
    assert normalize_text(text, only(phone=mode, squeeze_whitespace=True)) == expected


def test_phone_placeholder_is_configurable():
    assert normalize_text("폰 01012345678 입니다", only(phone="mask", phone_placeholder="<전화>")) \
        == "폰  <전화>  입니다"


def test_repeats_collapse_except_ascii_letters_and_digits():
    text = "ㅋㅋㅋㅋㅋ 진짜!!!!!! 웃겨ㅠㅠㅠ 하하하하 1000000원 www zzz ...."
    assert normalize_text(text, only(max_repeat=2)) == "ㅋㅋ 진짜!! 웃겨ㅠㅠ 하하 1000000원 www zzz .."
    assert normalize_text("ㅋㅋㅋㅋㅋ!!!!", only(max_repeat=3)) == "ㅋㅋㅋ!!!"
    assert normalize_text("ㅋㅋㅋㅋㅋ", only()) == "ㅋㅋㅋㅋㅋ"


def test_whitespace_is_squeezed_and_stripped():
    assert normalize_text("  여러   칸\t공백\u3000끝  ", only(squeeze_whitespace=True)) == "여러 칸 공백 끝"


def test_default_cleaning_of_a_noisy_review():
    text = "완전 꿀잼ㅋㅋㅋㅋㅋ!!!!! 예매는 https://movie.example.com 문의 a@b.com 📞 010 1234 5678"
    assert clean_line(text) == "완전 꿀잼ㅋㅋ!! 예매는 문의 📞 [PHONE]"


@pytest.mark.parametrize("sentence, reason", [
    ("굿", "too_short"),
    ("12345 !!", "no_letters"),
    ("😀😀 ^^", "no_letters"),
    ("ㅋㅋ", None),
    ("OK", None),
])
def test_drop_rules(sentence, reason):
    assert drop_reason(sentence, DEFAULTS) == reason
    assert clean_line(sentence) == (None if reason else sentence)


def test_drop_rules_can_be_switched_off():
    lenient = dataclasses.replace(DEFAULTS, min_chars=0, drop_symbol_lines=False)
    assert drop_reason("1", lenient) is None
    assert clean_line("", lenient) is None  # nothing left is never a sentence


def test_options_reject_unknown_modes():
    with pytest.raises(CorpusError, match="phone must be one of"):
        CorpusOptions(phone="hide")
    with pytest.raises(CorpusError, match="format must be one of"):
        CorpusOptions(format="xml")


def test_deduplicator_stops_remembering_at_the_cap():
    dedup = corpus.Deduplicator(max_entries=1)
    assert [dedup.is_duplicate(s) for s in ["가나", "가나", "다라", "다라"]] == [False, True, False, False]
    assert dedup.capped and len(dedup) == 1


def test_dedup_cap_is_reported_in_stats(tmp_path):
    source = write(tmp_path / "in.txt", "가나다\n가나다\n라마바\n라마바\n")
    options = dataclasses.replace(DEFAULTS, dedup_max_entries=1)
    stats = corpus.prepare_corpus([source], str(tmp_path / "out.txt"), options)
    assert read(tmp_path / "out.txt") == "가나다\n라마바\n라마바\n"
    assert (stats["dedup_entries"], stats["dedup_capped"]) == (1, True)


# ----------------------------------------------------------------------------- sentence splitter

@pytest.mark.parametrize("text, expected", [
    ("영화가 정말 좋았다. 배우들도 멋졌어요! 또 볼까? 당연하죠…  끝",
     ["영화가 정말 좋았다.", "배우들도 멋졌어요!", "또 볼까?", "당연하죠…", "끝"]),
    ("대박이다!!! 진짜?? 응...", ["대박이다!!!", "진짜??", "응..."]),
    ("기억에 남는다.나중에 또 봐야지", ["기억에 남는다.", "나중에 또 봐야지"]),
    ('그는 "집에 간다. 내일 봐." 하고 떠났다. 나는 남았다.',
     ['그는 "집에 간다. 내일 봐." 하고 떠났다.', "나는 남았다."]),
    ("그녀가 말했다. “정말 고마워요.” 모두 웃었다. 끝.",
     ["그녀가 말했다.", "“정말 고마워요.” 모두 웃었다.", "끝."]),
    ("링크는 https://example.com/a. 메일은 kim@example.com. 끝",
     ["링크는 https://example.com/a.", "메일은 kim@example.com.", "끝"]),
])
def test_splitter_splits_after_sentence_final_punctuation(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize("text", [
    "원주율은 3.14이고 속도는 1.5배, 버전은 v2.0.1이다",
    "그가 「안녕. 반가워.」라고 인사했다",
    "괄호 (참고. 2쪽) 안과 [주석. 끝] 안은 그대로",
    "'좋다. 싫다.'라고 적었다",
    "링크 https://ko.wikipedia.org/wiki/한국.역사?판=2 와 메일 김.이@예제.한국 참고",
    "Mr. Kim은 U.S. 출신이고 Dr. Lee와 J. K. Rowling을 만났다",
    "1. 서론에서 다룬다",
    "재밌다ㅋㅋ 한 번 더",
])
def test_splitter_never_splits_inside_numbers_quotes_urls_or_abbreviations(text):
    assert split_sentences(text) == [text]


def test_long_unspaced_tokens_take_linear_time():
    """A 200k-letter token (base64, minified text) once took minutes in the e-mail regexes."""
    line = '"' + "a" * 200_000 + '. 끝 "' + "b" * 200_000 + "@"
    started = time.perf_counter()
    assert split_sentences(normalize_text(line, DEFAULTS)) == [line]
    assert time.perf_counter() - started < 10


def test_split_min_chars_keeps_short_lines_whole():
    short = "좋다. 최고."
    assert corpus.sentences_of(short, DEFAULTS) == ["좋다.", "최고."]
    assert corpus.sentences_of(short, dataclasses.replace(DEFAULTS, split_min_chars=10)) == [short]
    assert corpus.sentences_of(short, dataclasses.replace(DEFAULTS, split=False)) == [short]


# ----------------------------------------------------------------------------- readers + pipeline

def test_plain_text_documents_are_split_cleaned_and_deduplicated(tmp_path):
    source = write(tmp_path / "raw.txt",
                   "\ufeff첫 문서의 첫 줄이다. 둘째 문장이다!!!!\n"
                   "연락은 010-1234-5678 로.\n"
                   "\n\n"
                   "첫 문서의 첫 줄이다.\n"
                   "???\n"
                   "\n"
                   "둘째 문장이다!!\n")
    stats = corpus.prepare_corpus([source], str(tmp_path / "out.txt"))
    assert read(tmp_path / "out.txt") == (
        "첫 문서의 첫 줄이다.\n둘째 문장이다!!\n연락은 [PHONE] 로.\n")
    assert {key: stats[key] for key in [
        "documents_in", "documents_out", "lines_in", "lines_out", "sentences_split",
        "dropped", "skipped"]} == {
        "documents_in": 3, "documents_out": 1, "lines_in": 5, "lines_out": 3,
        "sentences_split": 1, "dropped": {"duplicate": 2, "no_letters": 1}, "skipped": {}}
    assert stats["chars_in"] == sum(map(len, ["첫 문서의 첫 줄이다. 둘째 문장이다!!!!",
                                              "연락은 010-1234-5678 로.", "첫 문서의 첫 줄이다.",
                                              "???", "둘째 문장이다!!"]))
    assert stats["chars_out"] == len("첫 문서의 첫 줄이다.둘째 문장이다!!연락은 [PHONE] 로.")
    assert stats["lines_in"] + stats["sentences_split"] - sum(stats["dropped"].values()) \
        == stats["lines_out"]
    assert json.loads(read(tmp_path / "out.txt.stats.json")) == stats


def test_jsonl_records_are_documents_and_text_field_is_selectable(tmp_path):
    records = [{"id": "1", "title": "가", "body": "첫 문단이다. 이어진다.\n\n둘째 문단이다."},
               {"id": "2", "title": "나", "body": "다른 문서다."}]
    source = write(tmp_path / "wiki.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                    for r in records))
    options = dataclasses.replace(DEFAULTS, text_field="body")
    stats = corpus.prepare_corpus([source], str(tmp_path / "out.txt"), options)
    assert read(tmp_path / "out.txt") == "첫 문단이다.\n이어진다.\n둘째 문단이다.\n\n다른 문서다.\n"
    assert (stats["documents_in"], stats["lines_in"]) == (2, 3)


def test_tsv_reads_the_named_column_with_bare_quotes(tmp_path):
    source = write(tmp_path / "ratings.tsv",
                   'id\tdocument\tlabel\n1\t"재밌다" 정말 최고\t1\n2\t별로였어요 "흠\t0\n')
    corpus.prepare_corpus([source], str(tmp_path / "out.txt"))
    assert read(tmp_path / "out.txt") == '"재밌다" 정말 최고\n\n별로였어요 "흠\n'


def test_csv_honours_quoted_cells_and_format_override(tmp_path):
    source = write(tmp_path / "reviews.dat", 'review,score\n"좋다, 정말 좋다",5\n"그냥 그래요",3\n')
    options = dataclasses.replace(DEFAULTS, format="csv", column="review")
    corpus.prepare_corpus([source], str(tmp_path / "out.txt"), options)
    assert read(tmp_path / "out.txt") == "좋다, 정말 좋다\n\n그냥 그래요\n"


def test_globs_and_comma_separated_inputs(tmp_path):
    for name in ["a.txt", "b.txt"]:
        write(tmp_path / name, f"{name} 파일의 문장이다.\n")
    write(tmp_path / "c.jsonl", '{"text": "제이슨 문장이다."}\n')
    paths = corpus.expand_inputs([f"{tmp_path}/*.txt,{tmp_path}/c.jsonl"])
    assert [os.path.basename(p) for p in paths] == ["a.txt", "b.txt", "c.jsonl"]
    corpus.prepare_corpus([f"{tmp_path}/*.txt", f"{tmp_path}/c.jsonl"], str(tmp_path / "o.txt"))
    assert read(tmp_path / "o.txt") == (
        "a.txt 파일의 문장이다.\n\nb.txt 파일의 문장이다.\n\n제이슨 문장이다.\n")


def test_undecodable_lines_are_skipped_counted_and_reported(tmp_path, caplog):
    good = "".join(f"좋은 줄 {i}번이다\n" for i in range(30)).encode()
    source = write(tmp_path / "mixed.txt", "좋은 줄이다\n".encode() + b"\xff\xfe broken\n" + good)
    caplog.set_level(logging.WARNING)
    stats = corpus.prepare_corpus([source], str(tmp_path / "out.txt"))
    assert read(tmp_path / "out.txt").splitlines()[:2] == ["좋은 줄이다", "좋은 줄 0번이다"]
    assert stats["skipped"] == {"undecodable_lines": 1}
    assert f"{source}:2: bytes that are not UTF-8 at column 1" in caplog.text


@pytest.mark.parametrize("lines", [3, 5000])
def test_a_mostly_undecodable_file_stops_the_run_naming_it(tmp_path, lines):
    """A binary matched by a glob is not 'cleaned' into garbage (checked early in big files)."""
    rng = random.Random(lines)
    binary = b"".join(bytes([0xff, rng.randrange(0x80, 0xff)]) + b" x\n" for _ in range(lines))
    source = write(tmp_path / "archive.txt", "앞 줄이다\n".encode() + binary)
    with pytest.raises(corpus.CorpusError, match=r"archive.txt: \d+ of its first \d+ lines are "
                                                 r"not UTF-8 text \(more than 5%\)"):
        corpus.prepare_corpus([source], str(tmp_path / "out.txt"))
    assert not (tmp_path / "out.txt").exists()
    relaxed = corpus.CorpusOptions(max_undecodable_share=1.0)
    assert corpus.prepare_corpus([source], str(tmp_path / "out.txt"), relaxed)["skipped"] == {
        "undecodable_lines": lines}


def test_undecodable_table_rows_and_invalid_json_are_counted(tmp_path):
    table = write(tmp_path / "t.tsv", "document\n좋다 좋아\n".encode() + b"\xff bad\n")
    lines = write(tmp_path / "j.jsonl", '{"text": "멀쩡한 문장"}\n{broken\n')
    stats = corpus.prepare_corpus([table, lines], str(tmp_path / "out.txt"))
    assert stats["skipped"] == {"bad_json_lines": 1, "undecodable_rows": 1}
    assert stats["lines_out"] == 2


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(CorpusError, match=f"input file not found: {tmp_path}/missing.txt"):
        corpus.expand_inputs([str(tmp_path / "missing.txt")])
    with pytest.raises(CorpusError, match=r"no input file matches '.*/nothing-\*\.txt'"):
        corpus.expand_inputs([str(tmp_path / "nothing-*.txt")])
    with pytest.raises(CorpusError, match=f"{tmp_path} is a directory; pass a glob such as"):
        corpus.expand_inputs([str(tmp_path)])
    with pytest.raises(CorpusError, match="no input file given"):
        corpus.expand_inputs([" , "])


def test_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path, monkeypatch):
    raw = tmp_path / "raw.txt"
    raw.write_text("첫 번째 문장입니다. 두 번째 문장입니다.\n", encoding="utf-8")
    for output, inputs in ((str(raw), [str(raw)]), ("raw.txt", [str(tmp_path / "*.txt")])):
        monkeypatch.chdir(tmp_path)
        with pytest.raises(corpus.CorpusError, match="is also an input .*raw.txt"):
            corpus.prepare_corpus(inputs, output)
    assert raw.read_text(encoding="utf-8") == "첫 번째 문장입니다. 두 번째 문장입니다.\n"


def test_missing_column_and_field_are_named(tmp_path):
    table = write(tmp_path / "t.tsv", "id\ttext\n1\t좋다\n")
    expected = r"t\.tsv: no column 'document' \(columns: \['id', 'text'\]\)"
    with pytest.raises(CorpusError, match=expected):
        corpus.prepare_corpus([table], str(tmp_path / "out.txt"))
    lines = write(tmp_path / "j.jsonl", '{"text": "문장이다"}\n{"body": "다른 키"}\n')
    with pytest.raises(CorpusError, match=r"j\.jsonl:2: no field 'text' .*\['body'\]"):
        corpus.prepare_corpus([lines], str(tmp_path / "out.txt"))


def test_empty_output_is_an_error_and_leaves_no_file(tmp_path):
    source = write(tmp_path / "symbols.txt", "???\n12345\n")
    with pytest.raises(CorpusError, match="no sentence survived cleaning of .*symbols.txt"):
        corpus.prepare_corpus([source], str(tmp_path / "out.txt"))
    assert sorted(os.listdir(tmp_path)) == ["symbols.txt"]


def test_gcs_round_trip(tmp_path, gcs_emulator):
    from electra_ko import storage

    root = f"gs://{gcs_emulator}/corpus-{uuid.uuid4().hex}"
    storage.write_text(f"{root}/raw/a.txt", "구름 위의 문장이다. 둘째 문장!\n")
    storage.write_text(f"{root}/raw/b.tsv", "document\n표 안의 문장이다\n")
    stats = corpus.prepare_corpus([f"{root}/raw/*"], f"{root}/out/corpus.txt")
    assert storage.read_text(f"{root}/out/corpus.txt") == (
        "구름 위의 문장이다.\n둘째 문장!\n\n표 안의 문장이다\n")
    assert json.loads(storage.read_text(f"{root}/out/corpus.txt.stats.json")) == stats


# ----------------------------------------------------------------------------- CLI + sample

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "electra_ko.corpus", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_cli_end_to_end_with_flags(tmp_path):
    source = write(tmp_path / "in.txt", "정말 재밌다ㅋㅋㅋㅋ 또 보자. 😀 ^_^\n메일 a@b.com\n")
    result = run_cli("--input", source, "--output", str(tmp_path / "out.txt"),
                     "--max_repeat", "1", "--nokeep_emoji", "--noremove_emails")
    assert result.returncode == 0, result.stderr
    assert read(tmp_path / "out.txt") == "정말 재밌다ㅋ 또 보자.\n메일 a@b.com\n"
    assert "documents 1 -> 1" in result.stdout and "no_letters 1" in result.stdout
    assert "tensorflow" not in result.stderr.lower()


def test_cli_error_names_the_file_without_traceback(tmp_path):
    result = run_cli("--input", str(tmp_path / "absent.txt"), "--output", str(tmp_path / "o.txt"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"electra_ko.corpus: error: input file not found: {tmp_path}/absent.txt")


def test_module_does_not_import_tensorflow():
    code = "import sys, electra_ko.corpus; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.stdout.strip() == "False"


def test_temporaries_of_a_killed_run_are_removed_at_start(tmp_path, caplog):
    source = write(tmp_path / "in.txt", "정말 재밌다.\n")
    out = tmp_path / "out"
    plant_temporaries(str(out), [".corpus.txt.k1ll3d00.tmp", ".corpus.txt.stats.json.k1ll3d00.tmp",
                                 ".other.txt.k1ll3d00.tmp", ".keep"])
    corpus.prepare_corpus([source], str(out / "corpus.txt"))
    assert sorted(os.listdir(out)) == [".keep", ".other.txt.k1ll3d00.tmp", "corpus.txt",
                                       "corpus.txt.stats.json"]
    assert (f"removed what killed runs left in {out}: .corpus.txt.k1ll3d00.tmp, "
            ".corpus.txt.stats.json.k1ll3d00.tmp") in caplog.text


def test_bundled_sample_exercises_every_cleaner(tmp_path):
    sample = os.path.join(REPO, "electra_ko", "sample", "korean_sample.txt")
    stats = corpus.prepare_corpus([sample], str(tmp_path / "out.txt"))
    text = read(tmp_path / "out.txt")
    assert (stats["documents_in"], stats["documents_out"]) == (79, 79)
    assert stats["dropped"] == {"duplicate": 1, "no_letters": 1, "too_short": 1}
    assert stats["sentences_split"] > 150 and text.count("[PHONE]") == 3
    assert "http" not in text and "@" not in text and "ㅋㅋㅋ" not in text
