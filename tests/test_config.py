"""Config loading: defaults, presets, layering, google-research/electra compatibility, errors."""
import json

import pytest

from electra_ko import architecture, config


def write_json(tmp_path, data, name="cfg.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def test_size_preset_fills_unset_keys():
    cfg = config.load_config(config.PRETRAIN, model_size="base")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (768, 12, 12)
    assert cfg.intermediate_size == 3072
    assert cfg.train_batch_size == 256 and cfg.max_seq_length == 512
    assert cfg.learning_rate == pytest.approx(2e-4)


def test_explicit_keys_beat_the_preset(tmp_path):
    path = write_json(tmp_path, {"model_size": "large", "learning_rate": 1e-4, "mask_prob": 0.2})
    cfg = config.load_config(config.PRETRAIN, path)
    assert cfg.learning_rate == pytest.approx(1e-4)
    assert cfg.mask_prob == pytest.approx(0.2)
    assert cfg.hidden_size == 1024


def test_layers_override_in_order(tmp_path):
    path = write_json(tmp_path, {"learning_rate": 1e-3, "train_batch_size": 16})
    cfg = config.load_config(config.PRETRAIN, path, hparams='{"train_batch_size": 8}',
                             overrides=["learning_rate=3e-4", "model_name=ko_small"])
    assert cfg.learning_rate == pytest.approx(3e-4)
    assert cfg.train_batch_size == 8
    assert cfg.model_name == "ko_small"


def test_original_electra_config_loads_as_is(tmp_path):
    # The keys a KoELECTRA / KoSentELECTRA-style pretrain_config file carries.
    original = {"use_tpu": True, "num_tpu_cores": 8, "tpu_name": "my-tpu", "tpu_zone": "europe-west4-a",
                "model_size": "base", "vocab_size": 32200, "do_lower_case": False,
                "learning_rate": 2e-4, "keep_checkpoint_max": 30, "train_batch_size": 256,
                "save_checkpoints_steps": 50000, "num_train_steps": 1000000,
                "max_seq_length": 512, "generator_hidden_size": 0.33333}
    cfg = config.load_config(config.PRETRAIN, write_json(tmp_path, original))
    for key, value in original.items():
        assert getattr(cfg, key) == value
    assert cfg.generator_sizes() == dict(hidden_size=256, num_hidden_layers=12,
                                         num_attention_heads=4, intermediate_size=1024)


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    path = write_json(tmp_path, {"learnig_rate": 1e-4})
    with pytest.raises(config.ConfigError, match=r"'learnig_rate'.*cfg\.json.*'learning_rate'"):
        config.load_config(config.PRETRAIN, path)


def test_wrong_type_names_key():
    with pytest.raises(config.ConfigError, match=r"'train_batch_size' in --set must be int"):
        config.load_config(config.PRETRAIN, overrides=["train_batch_size=8.5"])
    with pytest.raises(config.ConfigError, match=r"'use_tpu'.*must be bool"):
        config.load_config(config.PRETRAIN, overrides=['use_tpu="yes"'])


def test_bad_choice_and_ranges():
    with pytest.raises(config.ConfigError, match="model_size"):
        config.load_config(config.PRETRAIN, model_size="huge")
    with pytest.raises(config.ConfigError, match="mask_prob"):
        config.load_config(config.PRETRAIN, mask_prob=1.5)
    with pytest.raises(config.ConfigError, match="multiple of num_attention_heads"):
        config.load_config(config.PRETRAIN, hidden_size=100, num_attention_heads=3)


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "learning_rate": 1e-4,\n}\n', encoding="utf-8")
    with pytest.raises(config.ConfigError, match=r"broken\.json:3"):
        config.load_config(config.PRETRAIN, str(path))


def test_missing_file():
    with pytest.raises(config.ConfigError, match="config file not found: /nope.json"):
        config.load_config(config.PRETRAIN, "/nope.json")


def test_model_hparam_overrides_and_unknown_inner_key():
    cfg = config.load_config(config.PRETRAIN, model_hparam_overrides={"hidden_size": 64,
                                                                      "num_attention_heads": 2})
    assert cfg.hidden_size == 64
    with pytest.raises(config.ConfigError, match="'hiden_size' in model_hparam_overrides"):
        config.load_config(config.PRETRAIN, model_hparam_overrides={"hiden_size": 64})


def test_derived_values_match_the_original_formulas():
    cfg = config.load_config(config.PRETRAIN, model_size="small")
    assert cfg.max_predictions_per_seq == int((0.15 + 0.005) * 128) == 19
    assert cfg.generator_sizes() == dict(hidden_size=64, num_hidden_layers=12,
                                         num_attention_heads=1, intermediate_size=256)
    large = config.load_config(config.PRETRAIN, model_size="large")
    assert large.max_predictions_per_seq == int(0.255 * 512)


def test_paths_default_under_data_dir():
    cfg = config.load_config(config.PRETRAIN, data_dir="gs://bucket/ko", model_name="m1")
    assert cfg.vocab_file == "gs://bucket/ko/vocab.txt"
    assert cfg.pretrain_tfrecords == "gs://bucket/ko/pretrain_tfrecords"
    assert cfg.model_dir == "gs://bucket/ko/models/m1"


def test_unsupported_ablation_is_refused():
    with pytest.raises(config.ConfigError, match="two_tower_generator"):
        config.load_config(config.PRETRAIN, two_tower_generator=True)


def test_size_of_names_preset_architectures_only():
    assert architecture.size_of(architecture.SIZE_PRESETS["base"]) == "base"
    assert architecture.size_of(dict(architecture.SIZE_PRESETS["base"], hidden_size=512)) is None


def test_finetune_schema_presets_by_size():
    cfg = config.load_config(config.FINETUNE, model_size="base")
    assert cfg.learning_rate == pytest.approx(1e-4)
    assert cfg.layerwise_lr_decay == pytest.approx(0.8)
    assert cfg.train_batch_size == 32 and cfg.max_seq_length == 128
    tiny = config.load_config(config.FINETUNE, model_size="tiny")
    assert (tiny.learning_rate, tiny.layerwise_lr_decay) == (pytest.approx(3e-4), 1.0)
    with pytest.raises(config.ConfigError, match="'mask_prob'"):
        config.load_config(config.FINETUNE, overrides=["mask_prob=0.2"])


def test_replace_validates_and_keeps_original():
    cfg = config.load_config(config.PRETRAIN, model_size="debug")
    new = cfg.replace(learning_rate=2e-3)
    assert new.learning_rate == pytest.approx(2e-3) and cfg.learning_rate == pytest.approx(1e-3)
    with pytest.raises(config.ConfigError, match="unknown config key 'nope'"):
        cfg.replace(nope=1)
    with pytest.raises(AttributeError):
        cfg.learning_rate = 1.0


@pytest.mark.parametrize("schema", [config.PRETRAIN, config.FINETUNE])
def test_every_key_is_documented_and_listed(schema):
    undocumented = [key for key, spec in schema.items() if not spec.doc.strip()]
    assert not undocumented
    listing = config.describe_keys(schema).splitlines()
    assert [line.split()[0] for line in listing] == sorted(schema)
    by_key = {line.split()[0]: line for line in listing}
    assert "by model_size" in by_key["hidden_size"] and " 42 " in by_key["seed"]


def test_debug_shrinks_a_pretraining_run_as_the_original(tmp_path):
    path = write_json(tmp_path, {"debug": True, "num_train_steps": 100000,
                                 "train_batch_size": 256, "model_size": "base"})
    cfg = config.load_config(config.PRETRAIN, path)
    assert (cfg.train_batch_size, cfg.num_train_steps, cfg.eval_batch_size,
            cfg.iterations_per_loop, cfg.num_eval_steps) == (8, 20, 4, 1, 2)
    assert cfg.hidden_size == 768  # the size is the config's, as in the original
    assert config.load_config(config.PRETRAIN, path, overrides=["debug=false"]).num_train_steps \
        == 100000


def test_debug_in_a_fine_tuning_config_is_refused_with_the_reason():
    with pytest.raises(config.ConfigError, match="fine-tuning has no debug mode.*max_train_examples"):
        config.load_config(config.FINETUNE, overrides=["debug=true"])
    assert not config.load_config(config.FINETUNE, overrides=["debug=false"]).debug


def test_every_size_key_must_be_positive():
    for key in architecture.SIZE_KEYS:
        with pytest.raises(config.ConfigError, match=f"config key '{key}' must be > 0"):
            config.load_config(config.PRETRAIN, overrides=[f"{key}=0"])
