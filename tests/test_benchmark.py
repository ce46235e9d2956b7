"""Benchmark table: row labels, reported metrics, exact Markdown, flag errors."""
import pytest
from absl import flags

from electra_ko import benchmark, finetune


def results(final, aggregate=None, seeds=1):
    return {"final": final, "aggregate": aggregate or {}, "seeds": [{}] * seeds}


def test_model_names():
    assert benchmark.model_name("runs/ko-tiny/discriminator") == "ko-tiny/discriminator"
    assert benchmark.model_name("hf/KoELECTRA-small-v3/") == "KoELECTRA-small-v3"
    assert benchmark.model_name("random") == "random init"


def test_reported_prefers_labelled_test_and_seed_aggregates():
    single = results({"eval": {"accuracy": 80.0}, "test": {"accuracy": 81.5}})
    assert benchmark.reported(single) == {"accuracy": {"mean": 81.5}}
    unlabelled = results({"eval": {"accuracy": 70.0}, "test": None})
    assert benchmark.reported(unlabelled) == {"accuracy": {"mean": 70.0}}
    several = results({"eval": {"spearman": 1.0}, "test": {"spearman": 2.0}},
                      {"test": {"spearman": {"mean": 75.0, "std": 1.5, "best": 77.0,
                                             "values": []}}}, seeds=3)
    assert benchmark.reported(several) == {"spearman": {"mean": 75.0, "std": 1.5}}


def test_markdown_table_exact():
    rows = {
        "ko-tiny/discriminator": {
            "nsmc": {"accuracy": {"mean": 84.123}},
            "korsts": {"spearman": {"mean": 70.0, "std": 2.345}, "pearson": {"mean": 71.0}},
            "hate_speech": {"accuracy": {"mean": 60.0}, "macro_f1": {"mean": 55.556}}},
        "random init": {"nsmc": {"accuracy": {"mean": 74.5}}},
    }
    assert benchmark.format_table(rows, ["nsmc", "korsts", "hate_speech"]) == (
        "| Model | NSMC (acc) | KorSTS (spearman) | Hate Speech (acc / F1) |\n"
        "|---|---:|---:|---:|\n"
        "| ko-tiny/discriminator | 84.12 | 70.00 ± 2.35 | 60.00 / 55.56 |\n"
        "| random init | 74.50 | - | - |\n")


def test_flag_errors(tmp_path):
    fv = flags.FlagValues()
    benchmark.define_flags(fv)
    fv(["benchmark", "--tasks", "nsmc,klue", "--data_root", str(tmp_path),
        "--output_dir", str(tmp_path / "out")])
    with pytest.raises(ValueError, match="unknown task 'klue'"):
        benchmark.run_from_flags(fv)
    fv = flags.FlagValues()
    benchmark.define_flags(fv)
    fv(["benchmark", "--tasks", "nsmc"])
    with pytest.raises(finetune.FinetuneError, match="--data_root is required"):
        benchmark.run_from_flags(fv)
