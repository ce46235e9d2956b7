"""Task readers on small files in each benchmark's real format, pair encoding, metrics."""
import numpy as np
import pytest

from electra_ko import tasks
from electra_ko.vocab import load_tokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def tokenizer(tmp_path):
    words = ["영화", "정말", "좋다", "별로", "배우", "연기", "##가", "##는", "."]
    return load_tokenizer(write(tmp_path / "vocab" / "vocab.txt", "\n".join(SPECIALS + words) + "\n"))


def test_nsmc_reader_counts_empty_documents_and_keeps_bare_quotes(tmp_path):
    write(tmp_path / "ratings_train.txt",
          "id\tdocument\tlabel\n"
          "101\t\"정말 좋다\" 라고 말하고 싶다\t1\n"
          "102\t\t0\n"
          "103\tNA\t0\n"
          "104\t   \t1\n"
          "105\t배우 연기가 별로\t0\n")
    spec = tasks.get_task("nsmc")
    examples = tasks.read_examples(spec, str(tmp_path / "ratings_train.txt"))
    assert examples.text_a == ['"정말 좋다" 라고 말하고 싶다', "NA", "배우 연기가 별로"]
    assert examples.text_b is None
    assert examples.labels.tolist() == [1, 0, 0]
    assert examples.line_numbers.tolist() == [2, 4, 6]
    assert examples.num_empty == 2


def test_kornli_concatenates_train_files_and_maps_labels(tmp_path):
    header = "sentence1\tsentence2\tgold_label\n"
    write(tmp_path / "multinli.train.ko.tsv",
          header + "그는 집에 갔다.\t그는 밖에 있다.\tcontradiction\n"
                   "비가 온다.\t날씨가 흐리다.\tentailment\n")
    write(tmp_path / "snli_1.0_train.ko.tsv", header + "남자가 달린다.\t남자가 운동한다.\tneutral\n")
    write(tmp_path / "xnli.dev.ko.tsv", header + "고양이가 잔다.\t동물이 쉰다.\tentailment\n")
    write(tmp_path / "xnli.test.ko.tsv", header + "아이가 웃는다.\t아이가 운다.\tcontradiction\n")
    splits = tasks.load_splits(tasks.get_task("kornli"), str(tmp_path))
    assert splits.train.text_b == ["그는 밖에 있다.", "날씨가 흐리다.", "남자가 운동한다."]
    assert splits.train.labels.tolist() == [2, 0, 1]
    assert splits.eval.labels.tolist() == [0] and splits.test.labels.tolist() == [2]


def test_korsts_reads_scores_as_floats(tmp_path):
    header = "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\n"
    path = write(tmp_path / "sts-train.tsv",
                 header + "main-captions\tMSRvid\t2012test\t0001\t5.000\t남자가 기타를 친다.\t"
                          "한 남자가 기타를 연주한다.\n"
                          "main-news\theadlines\t2013\t0002\t0.4\t주가가 올랐다.\t비가 내렸다.\n")
    examples = tasks.read_examples(tasks.get_task("korsts"), path)
    assert examples.labels.dtype == np.float32
    assert examples.labels.tolist() == pytest.approx([5.0, 0.4])
    assert examples.text_a[1] == "주가가 올랐다."


def test_question_pair_honours_csv_quotes_and_keeps_labels_as_given(tmp_path):
    path = write(tmp_path / "train.txt",
                 "question1\tquestion2\tis_duplicate\n"
                 '"탭이\t들어간 질문?"\t같은 질문인가요?\t0\n'
                 "환불은 어떻게 하나요?\t배송은 언제 오나요?\t1\n")
    examples = tasks.read_examples(tasks.get_task("question_pair"), path)
    assert examples.text_a == ["탭이\t들어간 질문?", "환불은 어떻게 하나요?"]
    assert examples.labels.tolist() == [0, 1]


def test_hate_speech_predicts_the_hate_column(tmp_path):
    header = "comments\tcontain_gender_bias\tbias\thate\n"
    write(tmp_path / "labeled" / "train.tsv",
          header + "이 배우 최고다\tFalse\tnone\tnone\n"
                   "진짜 못생겼다\tFalse\tothers\toffensive\n"
                   "저런 사람은 사라져야 한다\tTrue\tgender\thate\n")
    write(tmp_path / "labeled" / "dev.tsv", header + "연기가 좋다\tFalse\tnone\tnone\n")
    splits = tasks.load_splits(tasks.get_task("hate_speech"), str(tmp_path))
    assert splits.train.labels.tolist() == [0, 1, 2]
    assert splits.test is None and len(splits.eval) == 1


def test_custom_task_discovers_sorted_labels(tmp_path):
    write(tmp_path / "tr.tsv", "q\tintent\nvalue\tbuy\n안녕\tgreet\n사고 싶다\tbuy\n")
    write(tmp_path / "te.tsv", "q\tintent\n팔아요\tsell\n")
    spec = tasks.custom_task("q", "intent", train_file="tr.tsv", test_file="te.tsv")
    with pytest.raises(tasks.TaskError, match=r"te\.tsv:2: unknown label 'sell'.*buy, greet"):
        tasks.load_splits(spec, str(tmp_path))
    splits = tasks.load_splits(spec.with_files(test_file=""), str(tmp_path))
    assert splits.spec.labels == ("buy", "greet")
    assert splits.train.labels.tolist() == [0, 1, 0]


def test_unlabeled_test_file_is_read_without_labels(tmp_path):
    path = write(tmp_path / "test.tsv", "comments\n그냥 그렇다\n")
    examples = tasks.read_examples(tasks.get_task("hate_speech"), path, require_labels=False)
    assert examples.labels is None and examples.text_a == ["그냥 그렇다"]


def test_errors_name_file_column_and_line(tmp_path):
    nsmc = tasks.get_task("nsmc")
    with pytest.raises(tasks.TaskError, match=r"file not found: .*ratings_train\.txt"):
        tasks.load_splits(nsmc, str(tmp_path))
    path = write(tmp_path / "a.tsv", "id\ttext\tlabel\n1\t좋다\t1\n")
    with pytest.raises(tasks.TaskError, match=r"a\.tsv: missing column\(s\) 'document'.*'text'"):
        tasks.read_examples(nsmc, path)
    path = write(tmp_path / "b.tsv", "id\tdocument\tlabel\n1\t좋다\t1\n2\t싫다\t긍정\n")
    with pytest.raises(tasks.TaskError, match=r"b\.tsv:3: unknown label '긍정'"):
        tasks.read_examples(nsmc, path)
    path = write(tmp_path / "c.tsv", "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\n"
                                     "g\tf\t2012\t1\thigh\t가\t나\n")
    with pytest.raises(tasks.TaskError, match=r"c\.tsv:2: regression task korsts needs a number "
                                              r"in column 'score', got 'high'"):
        tasks.read_examples(tasks.get_task("korsts"), path)
    path = tmp_path / "d.tsv"
    path.write_bytes("id\tdocument\tlabel\n1\t".encode() + b"\xff\xfe\t1\n")
    with pytest.raises(tasks.TaskError, match=r"d\.tsv: not UTF-8"):
        tasks.read_examples(nsmc, str(path))
    with pytest.raises(tasks.TaskError, match="unknown task 'klue'"):
        tasks.get_task("klue")


def test_max_examples_takes_the_first_rows(tmp_path):
    write(tmp_path / "ratings_train.txt",
          "id\tdocument\tlabel\n" + "".join(f"{i}\t리뷰 {i}\t{i % 2}\n" for i in range(10)))
    splits = tasks.load_splits(tasks.get_task("nsmc").with_files(eval_file="", test_file=""),
                               str(tmp_path), max_train_examples=4)
    assert splits.train.text_a == ["리뷰 0", "리뷰 1", "리뷰 2", "리뷰 3"]


def reference_truncation(a, b, budget):
    """BERT's pop-one-token loop, the definition the closed form must match."""
    a, b = list(a), list(b)
    while len(a) + len(b) > budget:
        (a if len(a) > len(b) else b).pop()
    return len(a), len(b)


def test_truncated_lengths_match_berts_loop():
    for budget in range(2, 12):
        for len_a in range(0, 15):
            for len_b in range(0, 15):
                assert tasks.truncated_lengths(len_a, len_b, budget) == \
                    reference_truncation(range(len_a), range(len_b), budget), (len_a, len_b, budget)


def test_pair_encoding_exact_ids_and_segments(tokenizer):
    # 영화(5) 정말(6) 좋다(7) 별로(8) 배우(9) 연기(10) ##가(11) ##는(12) .(13)
    enc = tasks.encode(tokenizer, ["영화 정말 좋다"], ["배우 연기가 별로 ."], max_seq_length=12)
    assert enc["input_ids"].tolist() == [[2, 5, 6, 7, 3, 9, 10, 11, 8, 13, 3, 0]]
    assert enc["segment_ids"].tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0]]
    assert enc["input_mask"].tolist() == [[1] * 11 + [0]]
    assert enc["lengths"].tolist() == [11]


def test_pair_encoding_truncates_longest_first(tokenizer):
    enc = tasks.encode(tokenizer, ["영화 정말 좋다 영화 정말"], ["배우 연기가 별로 ."],
                       max_seq_length=8)
    # budget 5, both 5 tokens: b loses the tie, then they alternate -> a 3, b 2
    assert enc["input_ids"].tolist() == [[2, 5, 6, 7, 3, 9, 10, 3]]
    assert enc["segment_ids"].tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]


def test_single_encoding_truncates_and_pads(tokenizer):
    enc = tasks.encode(tokenizer, ["영화 정말 좋다 별로", "좋다"], None, max_seq_length=5)
    assert enc["input_ids"].tolist() == [[2, 5, 6, 7, 3], [2, 7, 3, 0, 0]]
    assert enc["segment_ids"].sum() == 0
    assert enc["input_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def test_metrics_match_hand_computed_values():
    assert tasks.accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == pytest.approx(75.0)
    # class 0: tp 1, pred 2, actual 1 -> 2/3; class 1: tp 1, pred 1, actual 2 -> 2/3; class 2: 0
    assert tasks.macro_f1([0, 1, 1], [0, 1, 0], 3) == pytest.approx(100 * (4 / 9))
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 9.0]
    r = np.corrcoef(x, y)[0, 1]
    assert tasks.pearson(x, y) == pytest.approx(100 * r)
    assert tasks.spearman(x, y) == pytest.approx(100.0)
    # ties share their average rank: ranks of y are 1, 2.5, 2.5, 4
    assert tasks.spearman(x, [1, 5, 5, 7]) == pytest.approx(
        100 * np.corrcoef([1, 2, 3, 4], [1, 2.5, 2.5, 4])[0, 1])
    spec = tasks.get_task("hate_speech")
    logits = np.array([[3, 0, 0], [0, 2, 0], [0, 0, 1]], dtype=np.float32)
    assert tasks.compute_metrics(spec, [0, 1, 1], logits) == {
        "accuracy": pytest.approx(200 / 3), "macro_f1": pytest.approx(100 * (1 + 2 / 3 + 0) / 3)}
