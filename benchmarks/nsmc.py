"""NSMC reference numbers: a character 1-4-gram TF-IDF + logistic-regression baseline.

    python benchmarks/nsmc.py --data_dir ../shared/data/nsmc

Reads `ratings_train.txt` / `ratings_test.txt` with the project's NSMC reader (empty
reviews skipped and counted), fits on train, prints test accuracy and wall time.
The ELECTRA side of the comparison is `python -m electra_ko.finetune --task nsmc`
with and without `--init_checkpoint` (see the README).
"""
import argparse
import json
import os
import time

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from electra_ko import tasks


def tfidf_baseline(data_dir, max_features=None, c=1.0):
    spec = tasks.get_task("nsmc")
    train = tasks.read_examples(spec, os.path.join(data_dir, spec.train_files[0]))
    test = tasks.read_examples(spec, os.path.join(data_dir, spec.test_file))
    started = time.time()
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 4), sublinear_tf=True,
                                 max_features=max_features)
    features = vectorizer.fit_transform(train.text_a)
    classifier = LogisticRegression(C=c, max_iter=1000).fit(features, train.labels)
    predictions = classifier.predict(vectorizer.transform(test.text_a))
    return {"test_accuracy": tasks.accuracy(test.labels, predictions),
            "train_examples": len(train), "test_examples": len(test),
            "skipped_empty": {"train": train.num_empty, "test": test.num_empty},
            "features": features.shape[1], "seconds": round(time.time() - started, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="directory with ratings_*.txt")
    parser.add_argument("--max_features", type=int, default=None)
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    args = parser.parse_args()
    print(json.dumps(tfidf_baseline(args.data_dir, args.max_features, args.C), indent=2))


if __name__ == "__main__":
    main()
