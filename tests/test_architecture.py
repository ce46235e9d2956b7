"""Tests for electra_ko.architecture: one list of keys, presets and the generator rule, and
everything derived from them (config keys, exported config.json, sizes read from shapes)."""
import pathlib
import subprocess
import sys

import pytest

from electra_ko import architecture, config

TINY = architecture.EncoderConfig(
    vocab_size=30, embedding_size=8, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
    intermediate_size=24, hidden_dropout_prob=0.05, attention_probs_dropout_prob=0.0,
    max_position_embeddings=20, type_vocab_size=3, initializer_range=0.01, layer_norm_eps=1e-6)


def test_imports_without_tensorflow():
    """Sizes, presets and the config are read by tools that must not pay for TensorFlow."""
    code = ("import sys, electra_ko.architecture, electra_ko.config; "
            "print([m for m in ('tensorflow', 'keras') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(__file__).resolve().parents[1]).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_every_key_has_one_role_and_the_derived_lists_follow_the_one_order():
    keys = architecture.ARCHITECTURE_KEYS
    assert len(set(keys)) == len(keys) == 14
    for derived in (architecture.HF_CONFIG_KEYS, architecture.SIZE_KEYS, architecture.SHAPE_KEYS,
                    architecture.DROPOUT_KEYS, architecture.INIT_KEYS, architecture.PRESET_KEYS):
        assert list(derived) == [key for key in keys if key in derived]
    assert set(keys) - set(architecture.HF_CONFIG_KEYS) == {"position_embedding_init"}
    assert set(architecture.SIZE_KEYS) - set(architecture.SHAPE_KEYS) == {"num_attention_heads"}


@pytest.mark.parametrize("schema", [config.PRETRAIN, config.FINETUNE])
def test_config_schemas_hold_every_key_with_the_encoders_defaults(schema):
    for key in architecture.ARCHITECTURE_KEYS:
        default = schema[key].default
        assert default is None or default == architecture.DEFAULTS[key], key
    cfg = config.load_config(schema, model_size="debug", vocab_size=30)
    assert architecture.EncoderConfig.from_config(cfg).to_dict() == {
        key: getattr(cfg, key) for key in architecture.ARCHITECTURE_KEYS}


@pytest.mark.parametrize("name", architecture.MODEL_SIZES)
def test_each_preset_is_a_valid_encoder_that_names_itself(name):
    preset = architecture.SIZE_PRESETS[name]
    sizes = {key: preset[key] for key in architecture.PRESET_KEYS}
    architecture.EncoderConfig(vocab_size=100, **sizes)
    assert architecture.size_of(sizes) == name
    cfg = config.load_config(config.PRETRAIN, model_size=name, vocab_size=100)
    assert cfg.generator_sizes() == architecture.generator_sizes(
        preset["hidden_size"], preset["num_hidden_layers"], preset["generator_hidden_size"])


def test_generator_rule_rounds_like_google_research_electra():
    assert architecture.generator_sizes(768, 12, 0.333, 0.4) == dict(
        hidden_size=256, num_hidden_layers=5, num_attention_heads=4, intermediate_size=1024)
    assert architecture.generator_heads(32) == 1
    assert TINY.generator(0.5) == architecture.EncoderConfig(
        **dict(TINY.to_dict(), hidden_size=8, num_attention_heads=1, intermediate_size=32))


def test_bad_keys_fail_naming_them():
    with pytest.raises(ValueError, match="num_attention_heads must be a positive int"):
        architecture.EncoderConfig(**dict(TINY.to_dict(), num_attention_heads=0))
    with pytest.raises(ValueError, match="hidden_act must be one of"):
        architecture.EncoderConfig(**dict(TINY.to_dict(), hidden_act="relu"))


def test_hf_config_and_size_inference_round_trip_through_the_one_key_list():
    """An exported config.json holds HF_CONFIG_KEYS in their order and reads back as the same
    EncoderConfig; the sizes read off the exported tensors are SHAPE_KEYS, the same values."""
    from electra_ko import checkpoints, export

    model = checkpoints.build_model(checkpoints.DISCRIMINATOR, TINY)
    tower = checkpoints.tower_from_model(checkpoints.DISCRIMINATOR, model)
    written = export.hf_config(tower, {"pad": 0})
    keys = list(written)
    assert keys[keys.index("vocab_size"):][:len(architecture.HF_CONFIG_KEYS)] == list(
        architecture.HF_CONFIG_KEYS)
    assert checkpoints.encoder_config_from_hf(written, "config.json") == TINY
    assert checkpoints.infer_sizes(tower.tensors) == {
        key: getattr(TINY, key) for key in architecture.SHAPE_KEYS}


def test_every_head_name_is_registered_once():
    from electra_ko import checkpoints

    tf1_names = [tf1 for pairs in checkpoints.HEADS.values() for tf1, _ in pairs]
    hf_names = [hf for pairs in checkpoints.HEADS.values() for _, hf in pairs]
    assert len(set(tf1_names)) == len(tf1_names) and len(set(hf_names)) == len(hf_names)
    for kind in (checkpoints.DISCRIMINATOR, checkpoints.GENERATOR, checkpoints.CLASSIFIER):
        model = checkpoints.build_model(kind, TINY, labels=("a", "b"))
        head = {name for name, _ in model.tf1_weights()} - {
            name for name, _ in model.tf1_weights() if name.startswith(("electra/", "generator/"))}
        assert head == {tf1 for tf1, _ in checkpoints.HEADS[kind]}, kind
