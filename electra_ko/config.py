"""One config object for every stage, loaded from JSON and overridden by flags.

Key names follow google-research/electra's `configure_pretraining.py` and
`configure_finetuning.py`, so config files written for it load unchanged. Validation
happens once, here: an unknown key or a wrong type is a `ConfigError` naming the key
(and the file it came from). No TensorFlow import.
"""
import difflib
import json
import math
from typing import Any, Iterable, Mapping, Optional


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type or an invalid value."""


class _Key:
    """One config key: its default and the types it accepts."""

    def __init__(self, default, types, choices=None, doc=""):
        self.default = default
        self.types = types if isinstance(types, tuple) else (types,)
        self.choices = choices
        self.doc = doc


POSITION_EMBEDDING_INITS = ("truncated_normal", "sinusoidal")
EMBEDDING_SHARING = ("tied", "gdes", "untied")

_OPT_INT = (int, type(None))
_OPT_FLOAT = (float, type(None))
_OPT_STR = (str, type(None))

# Architecture keys shared by pretraining and fine-tuning. `None` = from model_size.
_MODEL_KEYS = {
    "model_size": _Key("small", str, ("debug", "tiny", "small", "base", "large")),
    "model_hparam_overrides": _Key({}, dict, doc="BERT-config keys overriding the size preset"),
    "vocab_size": _Key(None, _OPT_INT, doc="None = size of vocab_file"),
    "do_lower_case": _Key(False, bool),
    "embedding_size": _Key(None, _OPT_INT),
    "hidden_size": _Key(None, _OPT_INT),
    "num_hidden_layers": _Key(None, _OPT_INT),
    "num_attention_heads": _Key(None, _OPT_INT),
    "intermediate_size": _Key(None, _OPT_INT),
    "hidden_act": _Key("gelu", str, ("gelu",)),
    "hidden_dropout_prob": _Key(0.1, float),
    "attention_probs_dropout_prob": _Key(0.1, float),
    "max_position_embeddings": _Key(512, int),
    "type_vocab_size": _Key(2, int),
    "initializer_range": _Key(0.02, float),
    "layer_norm_eps": _Key(1e-12, float),
    "position_embedding_init": _Key(
        "truncated_normal", str, POSITION_EMBEDDING_INITS,
        doc="how position embeddings start: truncated_normal (BERT/ELECTRA) or sinusoidal "
            "(leaves the early unigram plateau sooner in small models; export unchanged)"),
    "vocab_file": _Key(None, _OPT_STR),
    "max_seq_length": _Key(None, _OPT_INT),
    "seed": _Key(42, int),
    "mixed_precision": _Key("auto", str, ("auto", "float32", "mixed_bfloat16", "mixed_float16")),
    "jit_compile": _Key(True, bool),
    # accelerator keys of the original; `use_tpu` selects TPUStrategy
    "use_tpu": _Key(False, bool),
    "num_tpu_cores": _Key(1, int),
    "tpu_name": _Key(None, _OPT_STR, doc='"" or "local" = the TPU of this VM; any other name '
                                         "is a remote TPU or a pod slice"),
    "tpu_type": _Key(None, _OPT_STR, doc="accelerator type of the slice (v3-8, v4-32, "
                                         "v5litepod-16, ...): --dry_run estimates per-core "
                                         "memory for it"),
    "tpu_zone": _Key(None, _OPT_STR),
    "gcp_project": _Key(None, _OPT_STR),
    "tpu_job_name": _Key(None, _OPT_STR),
    "model_name": _Key("electra_ko", str),
    "debug": _Key(False, bool),
}

PRETRAIN = dict(_MODEL_KEYS, **{
    # objective
    "do_train": _Key(True, bool),
    "do_eval": _Key(False, bool),
    "init_checkpoint": _Key(None, _OPT_STR,
                            doc="continue pretraining from this checkpoint (ours, Hugging Face "
                                "or TF1; see electra_ko.warm_start); resuming model_dir wins"),
    "init_generator": _Key(None, _OPT_STR,
                           doc="Hugging Face generator folder pairing a discriminator-only "
                               "init_checkpoint"),
    "electra_objective": _Key(True, bool),
    "gen_weight": _Key(1.0, float),
    "disc_weight": _Key(50.0, float),
    "mask_prob": _Key(None, _OPT_FLOAT),
    "whole_word_masking": _Key(False, bool),
    "temperature": _Key(1.0, float),
    # generator (keys of the original; unsupported variants are rejected in validation)
    "generator_hidden_size": _Key(None, _OPT_FLOAT, doc="fraction of the discriminator's"),
    "generator_layers": _Key(1.0, float),
    "uniform_generator": _Key(False, bool),
    "two_tower_generator": _Key(False, bool),
    "untied_generator_embeddings": _Key(False, bool, doc="use embedding_sharing=untied"),
    "embedding_sharing": _Key(
        "tied", str, EMBEDDING_SHARING,
        doc="generator/discriminator embeddings: tied (google-research/electra), gdes "
            "(DeBERTaV3: the discriminator trains only a delta on the shared tables) or untied; "
            "a masked LM (electra_objective=false) has one embedding layer and ignores it"),
    "untied_generator": _Key(True, bool),
    "disallow_correct": _Key(False, bool),
    # optimisation
    "learning_rate": _Key(None, _OPT_FLOAT),
    "lr_decay_power": _Key(1.0, float),
    "weight_decay_rate": _Key(0.01, float),
    "num_warmup_steps": _Key(10000, int),
    "optimizer": _Key("adamw", str, ("adamw", "lamb")),
    "adam_beta1": _Key(0.9, float),
    "adam_beta2": _Key(0.999, float),
    "adam_epsilon": _Key(1e-6, float),
    "adam_bias_correction": _Key(False, bool,
                                 doc="AdamW corrects its moments' zero start (Keras, PyTorch); "
                                     "false = as google-research/electra, larger first steps"),
    "clip_norm": _Key(1.0, float),
    # training loop
    "num_train_steps": _Key(1000000, int),
    "disc_health_check_steps": _Key(
        2000, int, doc="steps after warm-up at which a discriminator with precision and recall "
                       "still 0 gets one warning saying what to try (0 = never)"),
    "num_eval_steps": _Key(100, int),
    "iterations_per_loop": _Key(200, int, doc="steps between progress lines and summaries"),
    "stop_check_secs": _Key(10.0, float,
                            doc="longest device call between checks for SIGTERM (a preempted "
                                "TPU gets ~30 s notice): the checkpoint of the current step "
                                "is saved within about this time"),
    "save_checkpoints_steps": _Key(1000, int),
    "keep_checkpoint_max": _Key(5, int),
    "train_batch_size": _Key(None, _OPT_INT),
    "eval_batch_size": _Key(128, int),
    # paths (local or gs://); unset ones default under data_dir as in the original
    "data_dir": _Key(None, _OPT_STR),
    "pretrain_tfrecords": _Key(None, _OPT_STR),
    "model_dir": _Key(None, _OPT_STR),
    "results_txt": _Key(None, _OPT_STR),
    "results_pkl": _Key(None, _OPT_STR),
    # raw corpus -> vocab -> shards, run by the driver when no shards exist yet
    "corpus": _Key(None, _OPT_STR),
    "limit_alphabet": _Key(15000, int),
    "min_frequency": _Key(2, int),
    "num_unused": _Key(200, int),
    "num_shards": _Key(16, int),
})

FINETUNE = dict(_MODEL_KEYS, **{
    "task": _Key("nsmc", str),
    "learning_rate": _Key(None, _OPT_FLOAT, doc="None = by model size"),
    "layerwise_lr_decay": _Key(None, _OPT_FLOAT,
                               doc="None = by model size (0.8; tiny 1.0); a randomly "
                                   "initialised model always trains with 1"),
    "weight_decay_rate": _Key(0.01, float),
    "warmup_proportion": _Key(0.1, float),
    "num_train_epochs": _Key(3.0, float),
    "train_batch_size": _Key(32, int),
    "eval_batch_size": _Key(32, int),
    "iterations_per_loop": _Key(20, int, doc="training steps per device call (a TPU runs them "
                                            "without returning to the host)"),
    "adam_epsilon": _Key(1e-6, float),
    "clip_norm": _Key(1.0, float),
    "init_checkpoint": _Key(None, _OPT_STR),
    "data_dir": _Key(None, _OPT_STR),
    "output_dir": _Key(None, _OPT_STR),
})

# Architecture (and size-dependent training) defaults per model_size. The paper's
# values for small/base/large; tiny and debug are ours, for CPU runs and tests.
SIZE_PRESETS = {
    "debug": dict(embedding_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, generator_hidden_size=0.5, learning_rate=1e-3,
                  train_batch_size=8, max_seq_length=64, mask_prob=0.15),
    "tiny": dict(embedding_size=128, hidden_size=128, num_hidden_layers=4, num_attention_heads=2,
                 intermediate_size=512, generator_hidden_size=0.5, learning_rate=1e-3,
                 train_batch_size=32, max_seq_length=128, mask_prob=0.15),
    "small": dict(embedding_size=128, hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
                  intermediate_size=1024, generator_hidden_size=0.25, learning_rate=5e-4,
                  train_batch_size=128, max_seq_length=128, mask_prob=0.15),
    "base": dict(embedding_size=768, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, generator_hidden_size=1.0 / 3.0, learning_rate=2e-4,
                 train_batch_size=256, max_seq_length=512, mask_prob=0.15),
    "large": dict(embedding_size=1024, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096, generator_hidden_size=0.25, learning_rate=2e-4,
                  train_batch_size=2048, max_seq_length=512, mask_prob=0.25),
}

# The keys that tell the sizes apart (a checkpoint's architecture names its size).
ENCODER_SIZE_KEYS = ("embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size")

# Fine-tuning defaults by size (the ELECTRA paper's recipe). `tiny` is ours, not the
# paper's: with 4 layers, decay 0.8 scales the embeddings' rate by 0.8 ** 5 = 0.33 and the
# model underfits (NSMC dev, 24k reviews, pretrained tiny: 78.4% with 0.8, 82.2% with 1.0).
FINETUNE_PRESETS = {
    "debug": dict(learning_rate=1e-3, layerwise_lr_decay=0.8, max_seq_length=64),
    "tiny": dict(learning_rate=3e-4, layerwise_lr_decay=1.0, max_seq_length=128),
    "small": dict(learning_rate=3e-4, layerwise_lr_decay=0.8, max_seq_length=128),
    "base": dict(learning_rate=1e-4, layerwise_lr_decay=0.8, max_seq_length=128),
    "large": dict(learning_rate=5e-5, layerwise_lr_decay=0.8, max_seq_length=128),
}

_BERT_CONFIG_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "embedding_size", "vocab_size", "hidden_dropout_prob",
                     "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
                     "initializer_range", "hidden_act", "layer_norm_eps")


class Config:
    """Validated, fully resolved settings. Read keys as attributes; `to_dict()` to save."""

    def __init__(self, schema: Mapping[str, _Key], values: Mapping[str, Any],
                 explicit: Iterable[str] = ()):
        object.__setattr__(self, "_schema", schema)
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_explicit", frozenset(explicit))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name, value):
        raise AttributeError("Config is read-only; use replace(**changes)")

    def to_dict(self) -> dict:
        return dict(self._values)

    @property
    def explicit(self) -> frozenset:
        """The keys given by a file, flag or `replace`, not filled in by defaults."""
        return self._explicit

    def replace(self, **changes) -> "Config":
        """A new validated Config with some keys changed (they count as given)."""
        _check_known(self._schema, changes, source="replace()")
        values = dict(self._values, **{k: _coerce(self._schema[k], k, v, "replace()")
                                       for k, v in changes.items()})
        return Config(self._schema, values, self._explicit | set(changes))

    def with_model_size(self, model_size: str) -> "Config":
        """This config for another `model_size`: the keys that follow the size (default
        None) and were not given take that size's preset values."""
        values = dict(self._values, model_size=_coerce(self._schema["model_size"], "model_size",
                                                       model_size, "with_model_size()"))
        _apply_presets(self._schema, values, self._explicit)
        return Config(self._schema, values, self._explicit | {"model_size"})

    @property
    def max_predictions_per_seq(self) -> int:
        """As google-research/electra: int((mask_prob + 0.005) * max_seq_length)."""
        return int((self.mask_prob + 0.005) * self.max_seq_length)

    def generator_sizes(self) -> dict:
        """Generator encoder sizes derived as google-research/electra derives them."""
        hidden = int(round(self.hidden_size * self.generator_hidden_size))
        return dict(hidden_size=hidden,
                    num_hidden_layers=int(round(self.num_hidden_layers * self.generator_layers)),
                    num_attention_heads=max(1, hidden // 64),
                    intermediate_size=4 * hidden)

    def __repr__(self):
        return "Config(" + json.dumps(self._values, sort_keys=True, default=str) + ")"


def _check_known(schema, values, source):
    for key in values:
        if key not in schema:
            close = difflib.get_close_matches(key, schema.keys(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r} in {source}{hint}")


def _coerce(spec: _Key, key: str, value, source: str):
    """Check `value` against the key's types; ints are accepted for floats."""
    if float in spec.types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and bool not in spec.types:
        ok = False
    else:
        ok = isinstance(value, spec.types)
    if not ok:
        names = "/".join("null" if t is type(None) else t.__name__ for t in spec.types)
        raise ConfigError(f"config key {key!r} in {source} must be {names}, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"config key {key!r} in {source} must be one of "
                          f"{', '.join(map(str, spec.choices))}; got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {key!r} in {source} must be finite, got {value!r}")
    return value


def _parse_override(text: str):
    """`key=value` with a JSON value; bare words are strings (`model_size=base`)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def read_json_file(path: str) -> dict:
    """Read a JSON object from a local or gs:// file, with errors naming the file and line."""
    from electra_ko import storage  # local import: storage pulls in GCS only when needed
    try:
        text = storage.read_text(path)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a JSON object")
    return data


def load_config(schema: Mapping[str, _Key], path: Optional[str] = None,
                overrides: Iterable[str] = (), hparams: Optional[str] = None,
                **values) -> Config:
    """Defaults <- JSON file <- `--hparams` (JSON text or file) <- `--set key=value` <- kwargs.

    Every layer is validated with its source named in errors; then the size preset fills
    what is still unset and paths are resolved under `data_dir` as in the original.
    """
    layers = []
    if path:
        layers.append((read_json_file(path), path))
    if hparams:
        text = hparams.strip()
        data = json.loads(text) if text.startswith("{") else read_json_file(text)
        layers.append((data, "--hparams"))
    parsed = dict(_parse_override(o) for o in overrides)
    if parsed:
        layers.append((parsed, "--set"))
    if values:
        layers.append(({k: v for k, v in values.items() if v is not None}, "arguments"))

    resolved = {k: spec.default for k, spec in schema.items()}
    explicit = set()
    for data, source in layers:
        _check_known(schema, data, source)
        for key, value in data.items():
            resolved[key] = _coerce(schema[key], key, value, source)
            explicit.add(key)
    _apply_presets(schema, resolved, explicit)
    explicit |= _apply_bert_overrides(schema, resolved)
    _resolve_paths(resolved)
    _validate(resolved)
    return Config(schema, resolved, explicit)


def size_presets(schema, model_size: str) -> dict:
    """The size-dependent defaults of `model_size` (fine-tuning's own for FINETUNE)."""
    presets = dict(SIZE_PRESETS[model_size])
    if schema is FINETUNE:
        presets.update(FINETUNE_PRESETS[model_size])
    return presets


def size_of(sizes: Mapping[str, Any]) -> Optional[str]:
    """The model_size whose preset has exactly these encoder sizes, else None."""
    for name, preset in SIZE_PRESETS.items():
        if all(sizes.get(key) == preset[key] for key in ENCODER_SIZE_KEYS):
            return name
    return None


def _apply_presets(schema, resolved, explicit):
    """Fill the keys that follow the size (default None) and were not given."""
    for key, value in size_presets(schema, resolved["model_size"]).items():
        if key in schema and key not in explicit and schema[key].default is None:
            resolved[key] = value


def _apply_bert_overrides(schema, resolved):
    """`model_hparam_overrides` holds BERT-config keys, as in the original; returns them
    (they count as given)."""
    overrides = resolved["model_hparam_overrides"]
    for key, value in overrides.items():
        if key not in _BERT_CONFIG_KEYS:
            raise ConfigError(f"unknown key {key!r} in model_hparam_overrides; "
                              f"known: {', '.join(_BERT_CONFIG_KEYS)}")
        resolved[key] = _coerce(schema[key], key, value, "model_hparam_overrides")
    return set(overrides)


def _resolve_paths(resolved):
    data_dir = resolved.get("data_dir")
    if not data_dir:
        return
    from electra_ko import storage
    defaults = {"vocab_file": storage.join(data_dir, "vocab.txt"),
                "pretrain_tfrecords": storage.join(data_dir, "pretrain_tfrecords"),
                "model_dir": storage.join(data_dir, "models", resolved["model_name"])}
    for key, value in defaults.items():
        if key in resolved and not resolved[key]:
            resolved[key] = value


def _validate(resolved):
    def positive(*keys):
        for k in keys:
            if k in resolved and resolved[k] is not None and resolved[k] <= 0:
                raise ConfigError(f"config key {k!r} must be > 0, got {resolved[k]!r}")
    positive("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "embedding_size", "max_seq_length", "train_batch_size", "eval_batch_size",
             "num_train_steps", "iterations_per_loop", "save_checkpoints_steps", "learning_rate",
             "vocab_size", "num_train_epochs")
    if resolved["hidden_size"] % resolved["num_attention_heads"]:
        raise ConfigError(f"hidden_size {resolved['hidden_size']} is not a multiple of "
                          f"num_attention_heads {resolved['num_attention_heads']}")
    if resolved["max_seq_length"] > resolved["max_position_embeddings"]:
        raise ConfigError(f"max_seq_length {resolved['max_seq_length']} exceeds "
                          f"max_position_embeddings {resolved['max_position_embeddings']}")
    for prob in ("mask_prob", "hidden_dropout_prob", "attention_probs_dropout_prob"):
        if prob in resolved and resolved[prob] is not None and not 0 <= resolved[prob] < 1:
            raise ConfigError(f"config key {prob!r} must be in [0, 1), got {resolved[prob]!r}")
    unsupported = {"uniform_generator": True, "two_tower_generator": True,
                   "untied_generator_embeddings": True, "disallow_correct": True,
                   "untied_generator": False}
    for key, bad in unsupported.items():
        if resolved.get(key) == bad:
            hint = ("; set embedding_sharing=untied instead" if key == "untied_generator_embeddings"
                    else "")
            raise ConfigError(f"config key {key!r}={bad} (an ablation of the original paper) "
                              f"is not supported by electra_ko{hint}")

