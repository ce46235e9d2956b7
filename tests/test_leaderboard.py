"""Leaderboard table: row labels, reported metrics, exact Markdown, flag errors; the old
`electra_ko.benchmark` name still runs it."""
import os
import subprocess
import sys

import pytest
from absl import flags

from electra_ko import finetune, leaderboard


def results(final, aggregate=None, seeds=1):
    return {"final": final, "aggregate": aggregate or {}, "seeds": [{}] * seeds}


def test_model_names():
    assert leaderboard.model_name("runs/ko-tiny/discriminator") == "ko-tiny/discriminator"
    assert leaderboard.model_name("hf/KoELECTRA-small-v3/") == "KoELECTRA-small-v3"
    assert leaderboard.model_name("random") == "random init"


def test_reported_prefers_labelled_test_and_seed_aggregates():
    single = results({"eval": {"accuracy": 80.0}, "test": {"accuracy": 81.5}})
    assert leaderboard.reported(single) == {"accuracy": {"mean": 81.5}}
    unlabelled = results({"eval": {"accuracy": 70.0}, "test": None})
    assert leaderboard.reported(unlabelled) == {"accuracy": {"mean": 70.0}}
    several = results({"eval": {"spearman": 1.0}, "test": {"spearman": 2.0}},
                      {"test": {"spearman": {"mean": 75.0, "std": 1.5, "best": 77.0,
                                             "values": []}}}, seeds=3)
    assert leaderboard.reported(several) == {"spearman": {"mean": 75.0, "std": 1.5}}


def test_markdown_table_exact():
    rows = {
        "ko-tiny/discriminator": {
            "nsmc": {"accuracy": {"mean": 84.123}},
            "korsts": {"spearman": {"mean": 70.0, "std": 2.345}, "pearson": {"mean": 71.0}},
            "hate_speech": {"accuracy": {"mean": 60.0}, "macro_f1": {"mean": 55.556}}},
        "random init": {"nsmc": {"accuracy": {"mean": 74.5}}},
    }
    assert leaderboard.format_table(rows, ["nsmc", "korsts", "hate_speech"]) == (
        "| Model | NSMC (acc) | KorSTS (spearman) | Hate Speech (acc / F1) |\n"
        "|---|---:|---:|---:|\n"
        "| ko-tiny/discriminator | 84.12 | 70.00 ± 2.35 | 60.00 / 55.56 |\n"
        "| random init | 74.50 | - | - |\n")


def test_flag_errors(tmp_path):
    fv = flags.FlagValues()
    leaderboard.define_flags(fv)
    fv(["leaderboard", "--tasks", "nsmc,klue", "--data_root", str(tmp_path),
        "--output_dir", str(tmp_path / "out")])
    with pytest.raises(ValueError, match="unknown task 'klue'"):
        leaderboard.run_from_flags(fv)
    fv = flags.FlagValues()
    leaderboard.define_flags(fv)
    fv(["leaderboard", "--tasks", "nsmc"])
    with pytest.raises(finetune.FinetuneError, match="--data_root is required"):
        leaderboard.run_from_flags(fv)


def test_old_module_name_runs_the_leaderboard_and_says_it_moved(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-m", "electra_ko.benchmark", "--tasks", "nsmc"],
                            cwd=repo, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "electra_ko.benchmark is now electra_ko.leaderboard" in lines
    assert lines[-1] == "error: --data_root is required"
