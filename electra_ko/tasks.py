"""Fine-tuning tasks: file formats, readers, pair encoding and metrics (no TensorFlow).

Each built-in task is a `TaskSpec` naming the columns and default files of the public
Korean benchmark it reads; `custom_task` builds one from flags. Readers use pandas on
UTF-8 TSV with a header. Every column is read as a string (`na_filter=False`), so an
empty document is an empty string we can count and skip, and a review that reads
`NA` stays a review. Every problem in a file is an error naming the file, the line and
the column.
"""
import csv
import dataclasses
import os
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from electra_ko import storage

CLASSIFICATION = "classification"
REGRESSION = "regression"
HEADER_LINES = 1


class TaskError(ValueError):
    """A task file or its contents cannot be used (the message names the file and line)."""


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Where a task's data lives and how to read and score it.

    `labels` is the label vocabulary in output order; `None` for a classification task
    means "discover from the training file". Files are relative to the data dir;
    `train_files` may list several files that are concatenated (KorNLI).
    """
    name: str
    text_a: str
    text_b: Optional[str]
    label: str
    task_type: str
    labels: Optional[tuple]
    train_files: tuple
    eval_file: Optional[str]
    test_file: Optional[str]
    metrics: tuple
    quoting: int = csv.QUOTE_NONE

    @property
    def main_metric(self) -> str:
        """The metric that picks the best epoch (first listed)."""
        return self.metrics[0]

    def with_files(self, train_files=None, eval_file=None, test_file=None) -> "TaskSpec":
        """The spec with some files replaced; `""` for eval/test means "none"."""
        changes = {}
        if train_files:
            changes["train_files"] = tuple(train_files)
        if eval_file is not None:
            changes["eval_file"] = eval_file or None
        if test_file is not None:
            changes["test_file"] = test_file or None
        return dataclasses.replace(self, **changes)

    def with_labels(self, labels) -> "TaskSpec":
        return dataclasses.replace(self, labels=tuple(labels))


TASKS = {
    "nsmc": TaskSpec(
        name="nsmc", text_a="document", text_b=None, label="label", task_type=CLASSIFICATION,
        labels=("0", "1"), train_files=("ratings_train.txt",), eval_file="ratings_test.txt",
        test_file="ratings_test.txt", metrics=("accuracy",)),
    "kornli": TaskSpec(
        name="kornli", text_a="sentence1", text_b="sentence2", label="gold_label",
        task_type=CLASSIFICATION, labels=("entailment", "neutral", "contradiction"),
        train_files=("multinli.train.ko.tsv", "snli_1.0_train.ko.tsv"),
        eval_file="xnli.dev.ko.tsv", test_file="xnli.test.ko.tsv", metrics=("accuracy",)),
    "korsts": TaskSpec(
        name="korsts", text_a="sentence1", text_b="sentence2", label="score",
        task_type=REGRESSION, labels=None, train_files=("sts-train.tsv",),
        eval_file="sts-dev.tsv", test_file="sts-test.tsv", metrics=("spearman", "pearson")),
    # In this dataset 0 marks the same question: labels are kept exactly as given.
    "question_pair": TaskSpec(
        name="question_pair", text_a="question1", text_b="question2", label="is_duplicate",
        task_type=CLASSIFICATION, labels=("0", "1"), train_files=("train.txt",),
        eval_file="validation.txt", test_file="test.txt", metrics=("accuracy",),
        quoting=csv.QUOTE_MINIMAL),
    # The public test split carries no labels, so by default only dev is scored.
    "hate_speech": TaskSpec(
        name="hate_speech", text_a="comments", text_b=None, label="hate",
        task_type=CLASSIFICATION, labels=("none", "offensive", "hate"),
        train_files=("labeled/train.tsv",), eval_file="labeled/dev.tsv", test_file=None,
        metrics=("accuracy", "macro_f1")),
}
TASK_NAMES = tuple(TASKS) + ("custom",)


def custom_task(text_a_column, label_column, task_type=CLASSIFICATION, text_b_column=None,
                train_file=None, eval_file=None, test_file=None) -> TaskSpec:
    """A task over any TSV; classification labels are discovered from the training file."""
    if not text_a_column or not label_column:
        raise TaskError("task custom needs --text_a_column and --label_column")
    if task_type not in (CLASSIFICATION, REGRESSION):
        raise TaskError(f"--task_type must be {CLASSIFICATION} or {REGRESSION}, got {task_type!r}")
    if not train_file:
        raise TaskError("task custom needs --train_file")
    metrics = ("accuracy", "macro_f1") if task_type == CLASSIFICATION else ("spearman", "pearson")
    return TaskSpec(name="custom", text_a=text_a_column, text_b=text_b_column or None,
                    label=label_column, task_type=task_type, labels=None,
                    train_files=(train_file,), eval_file=eval_file or None,
                    test_file=test_file or None, metrics=metrics)


def get_task(name) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r}; known: {', '.join(TASK_NAMES)} "
                        "(custom takes its columns by flag)") from None


# --------------------------------------------------------------------------- reading


@dataclasses.dataclass
class Examples:
    """One split in memory. `labels` holds label ids (classification) or float scores;
    `None` when the file has no label column (an unlabeled test file)."""
    text_a: list
    text_b: Optional[list]
    labels: Optional[np.ndarray]
    line_numbers: np.ndarray
    path: str
    num_empty: int = 0

    def __len__(self):
        return len(self.text_a)

    def head(self, n: Optional[int]) -> "Examples":
        """The first `n` examples (quick trials); all of them for `None`."""
        if n is None or n >= len(self):
            return self
        return Examples(self.text_a[:n], None if self.text_b is None else self.text_b[:n],
                        None if self.labels is None else self.labels[:n],
                        self.line_numbers[:n], self.path, self.num_empty)


def read_table(path, quoting=csv.QUOTE_NONE) -> pd.DataFrame:
    """A TSV with a header (local or gs://), every cell a string; errors name the file."""
    if not storage.exists(path) or storage.isdir(path):
        raise TaskError(f"file not found: {path}")
    try:
        with storage.open_read(path, binary=True) as f:
            return pd.read_csv(f, sep="\t", quoting=quoting, dtype=str, na_filter=False,
                               encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TaskError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    except pd.errors.EmptyDataError:
        raise TaskError(f"{path}: empty file (expected a header line)") from None
    except pd.errors.ParserError as err:
        raise TaskError(f"{path}: malformed TSV: {err}") from None


def _require_columns(frame, path, columns):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TaskError(f"{path}: missing column(s) {', '.join(map(repr, missing))}; "
                        f"the header has {', '.join(map(repr, frame.columns))}")


def read_examples(spec: TaskSpec, path: str, require_labels: bool = True) -> Examples:
    """Read one file of `spec`; rows with an empty text are skipped and counted.

    Labels must already be known for classification (`spec.labels`): a label outside
    them is an error naming its line, so a test file cannot silently score garbage.
    """
    frame = read_table(path, spec.quoting)
    text_columns = [spec.text_a] + ([spec.text_b] if spec.text_b else [])
    _require_columns(frame, path, text_columns + ([spec.label] if require_labels else []))
    has_labels = spec.label in frame.columns
    empty = np.zeros(len(frame), dtype=bool)
    for column in text_columns:
        empty |= frame[column].str.strip().eq("").to_numpy()
    kept = frame[~empty]
    line_numbers = np.flatnonzero(~empty) + HEADER_LINES + 1
    labels = None
    if has_labels:
        labels = _parse_labels(spec, kept[spec.label].tolist(), line_numbers, path)
    return Examples(text_a=kept[spec.text_a].tolist(),
                    text_b=kept[spec.text_b].tolist() if spec.text_b else None,
                    labels=labels, line_numbers=line_numbers, path=path,
                    num_empty=int(empty.sum()))


def _parse_labels(spec, raw, line_numbers, path):
    if spec.task_type == REGRESSION:
        return _parse_scores(spec, raw, line_numbers, path)
    index = {label: i for i, label in enumerate(spec.labels)}
    ids = np.empty(len(raw), dtype=np.int32)
    for i, value in enumerate(raw):
        label = value.strip()
        if label not in index:
            raise TaskError(f"{path}:{line_numbers[i]}: unknown label {value!r} in column "
                            f"{spec.label!r}; task {spec.name} knows {', '.join(spec.labels)}")
        ids[i] = index[label]
    return ids


def _parse_scores(spec, raw, line_numbers, path):
    scores = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        i = bad[0]
        raise TaskError(f"{path}:{line_numbers[i]}: regression task {spec.name} needs a number "
                        f"in column {spec.label!r}, got {raw[i]!r} ({bad.size} such row(s))")
    return scores


def discover_labels(spec: TaskSpec, paths: Sequence[str]) -> tuple:
    """Sorted distinct labels of the training files (custom classification tasks)."""
    found = set()
    for path in paths:
        frame = read_table(path, spec.quoting)
        _require_columns(frame, path, [spec.label])
        found.update(v.strip() for v in frame[spec.label])
    found.discard("")
    if len(found) < 2:
        raise TaskError(f"{', '.join(paths)}: column {spec.label!r} holds {len(found)} distinct "
                        "label(s); classification needs at least 2")
    return tuple(sorted(found))


def concat_examples(parts: Sequence[Examples]) -> Examples:
    """Several training files as one split (KorNLI's MNLI + SNLI)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return Examples(
        text_a=[t for p in parts for t in p.text_a],
        text_b=None if first.text_b is None else [t for p in parts for t in p.text_b],
        labels=np.concatenate([p.labels for p in parts]),
        line_numbers=np.concatenate([p.line_numbers for p in parts]),
        path=",".join(p.path for p in parts),
        num_empty=sum(p.num_empty for p in parts))


# --------------------------------------------------------------------------- encoding


def truncated_lengths(len_a: int, len_b: int, budget: int):
    """Lengths after BERT's longest-first truncation (pop from the longer, ties from b).

    Closed form of the one-token-at-a-time loop: the shorter text keeps its length when it
    fits in half the budget, otherwise a gets ceil(budget/2) and b floor(budget/2).
    """
    keep_b = min(len_b, max(budget - len_a, budget // 2))
    keep_a = min(len_a, budget - keep_b)
    return keep_a, keep_b


def encode(tokenizer, text_a: Sequence[str], text_b: Optional[Sequence[str]],
           max_seq_length: int):
    """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` as int32 arrays [n, max_seq_length].

    Returns `input_ids`, `input_mask`, `segment_ids` padded with the vocab's pad id and the
    true `lengths`; pairs are truncated longest-first to fit.
    """
    special = tokenizer.special_ids
    ids_a = tokenizer.encode_batch(list(text_a))
    ids_b = tokenizer.encode_batch(list(text_b)) if text_b is not None else None
    n = len(ids_a)
    input_ids = np.full((n, max_seq_length), special["pad"], dtype=np.int32)
    segment_ids = np.zeros((n, max_seq_length), dtype=np.int32)
    lengths = np.empty(n, dtype=np.int32)
    budget = max_seq_length - (3 if ids_b is not None else 2)
    if budget < 2:
        raise TaskError(f"max_seq_length {max_seq_length} leaves no room for text")
    for i, a in enumerate(ids_a):
        b = ids_b[i] if ids_b is not None else []
        keep_a, keep_b = truncated_lengths(len(a), len(b), budget) if ids_b is not None \
            else (min(len(a), budget), 0)
        row = [special["cls"], *a[:keep_a], special["sep"]]
        if ids_b is not None:
            segment_ids[i, len(row):len(row) + keep_b + 1] = 1
            row += [*b[:keep_b], special["sep"]]
        input_ids[i, :len(row)] = row
        lengths[i] = len(row)
    input_mask = (np.arange(max_seq_length)[None, :] < lengths[:, None]).astype(np.int32)
    return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids,
            "lengths": lengths}


# --------------------------------------------------------------------------- metrics


def accuracy(labels, predictions) -> float:
    return float(100.0 * np.mean(np.asarray(labels) == np.asarray(predictions)))


def macro_f1(labels, predictions, num_classes: int) -> float:
    """Unweighted mean over classes of F1; a class never seen nor predicted scores 0."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    scores = []
    for c in range(num_classes):
        tp = np.sum((predictions == c) & (labels == c))
        predicted, actual = np.sum(predictions == c), np.sum(labels == c)
        scores.append(0.0 if tp == 0 else 2.0 * tp / (predicted + actual))
    return float(100.0 * np.mean(scores))


def pearson(x, y) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(100.0 * np.sum(x * y) / denominator) if denominator > 0 else 0.0


def spearman(x, y) -> float:
    """Pearson of the ranks, ties sharing their average rank."""
    return pearson(pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy())


def compute_metrics(spec: TaskSpec, labels, outputs) -> dict:
    """Metrics x100 from model outputs: logits [n, classes] or scores [n]."""
    if spec.task_type == REGRESSION:
        scores = np.asarray(outputs).reshape(-1)
        return {"spearman": spearman(labels, scores), "pearson": pearson(labels, scores)}
    predictions = np.argmax(outputs, axis=-1)
    metrics = {"accuracy": accuracy(labels, predictions)}
    if "macro_f1" in spec.metrics:
        metrics["macro_f1"] = macro_f1(labels, predictions, len(spec.labels))
    return metrics


# --------------------------------------------------------------------------- splits


@dataclasses.dataclass
class Splits:
    """A task's data ready to encode: the spec (labels resolved) and its three splits."""
    spec: TaskSpec
    train: Optional[Examples]
    eval: Optional[Examples]
    test: Optional[Examples]

    def empty_counts(self) -> dict:
        return {name: split.num_empty for name, split in
                (("train", self.train), ("eval", self.eval), ("test", self.test)) if split}


def resolve(data_dir: Optional[str], name: str) -> str:
    """A file name relative to the data dir (absolute names are kept)."""
    return name if os.path.isabs(name) or storage.is_gcs(name) or not data_dir \
        else storage.join(data_dir, name)


def load_splits(spec: TaskSpec, data_dir: Optional[str], max_train_examples=None,
                max_eval_examples=None, train=True) -> Splits:
    """Read train/eval/test of a task; `train=False` skips the training files."""
    train_paths = [resolve(data_dir, f) for f in spec.train_files]
    if spec.task_type == CLASSIFICATION and spec.labels is None:
        spec = spec.with_labels(discover_labels(spec, train_paths))
    train_split = None
    if train:
        train_split = concat_examples([read_examples(spec, p) for p in train_paths])
        train_split = train_split.head(max_train_examples)
        if not len(train_split):
            raise TaskError(f"{train_split.path}: no training example left "
                            f"({train_split.num_empty} empty row(s) skipped)")
    eval_split = test_split = None
    if spec.eval_file:
        eval_split = read_examples(spec, resolve(data_dir, spec.eval_file))
        eval_split = eval_split.head(max_eval_examples)
    if spec.test_file:
        test_split = read_examples(spec, resolve(data_dir, spec.test_file), require_labels=False)
        test_split = test_split.head(max_eval_examples)
    return Splits(spec, train_split, eval_split, test_split)
