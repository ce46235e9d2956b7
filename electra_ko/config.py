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

from electra_ko import architecture
from electra_ko.architecture import DEFAULTS as _ENCODER
from electra_ko.build_data import BuildSettings
from electra_ko.vocab import VocabSettings


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type or an invalid value."""


class _Key:
    """One config key: its default and the types it accepts."""

    def __init__(self, default, types, choices=None, doc=""):
        self.default = default
        self.types = types if isinstance(types, tuple) else (types,)
        self.choices = choices
        self.doc = doc


EMBEDDING_SHARING = ("tied", "gdes", "untied")

_OPT_INT = (int, type(None))
_OPT_FLOAT = (float, type(None))
_OPT_STR = (str, type(None))

# Architecture keys shared by pretraining and fine-tuning (`architecture.ARCHITECTURE_KEYS`,
# documented and typed here; defaults from `architecture.EncoderConfig`). `None` = from
# model_size.
_MODEL_KEYS = {
    "model_size": _Key("small", str, architecture.MODEL_SIZES,
                       doc="size preset filling the architecture keys left unset"),
    "model_hparam_overrides": _Key({}, dict, doc="BERT-config keys overriding the size preset"),
    "vocab_size": _Key(None, _OPT_INT, doc="None = size of vocab_file"),
    "do_lower_case": _Key(False, bool, doc="lower-case input (off for Korean: it strips "
                                           "accents, decomposing Hangul)"),
    "embedding_size": _Key(None, _OPT_INT, doc="token embedding width (projected to "
                                               "hidden_size when different)"),
    "hidden_size": _Key(None, _OPT_INT, doc="discriminator width"),
    "num_hidden_layers": _Key(None, _OPT_INT, doc="Transformer layers"),
    "num_attention_heads": _Key(None, _OPT_INT, doc="attention heads per layer"),
    "intermediate_size": _Key(None, _OPT_INT, doc="feed-forward width"),
    "hidden_act": _Key(_ENCODER["hidden_act"], str, architecture.HIDDEN_ACTS,
                       doc="feed-forward activation"),
    "hidden_dropout_prob": _Key(_ENCODER["hidden_dropout_prob"], float,
                                doc="dropout on embeddings and layer outputs"),
    "attention_probs_dropout_prob": _Key(_ENCODER["attention_probs_dropout_prob"], float,
                                         doc="dropout on attention weights"),
    "max_position_embeddings": _Key(_ENCODER["max_position_embeddings"], int,
                                    doc="longest sequence the position table holds"),
    "type_vocab_size": _Key(_ENCODER["type_vocab_size"], int, doc="segment ids (sentence A/B)"),
    "initializer_range": _Key(_ENCODER["initializer_range"], float,
                              doc="stddev of the truncated-normal initialiser"),
    "layer_norm_eps": _Key(_ENCODER["layer_norm_eps"], float, doc="LayerNorm epsilon"),
    "position_embedding_init": _Key(
        _ENCODER["position_embedding_init"], str, architecture.POSITION_EMBEDDING_INITS,
        doc="how position embeddings start: truncated_normal (BERT/ELECTRA) or sinusoidal "
            "(leaves the early unigram plateau sooner in small models; export unchanged)"),
    "vocab_file": _Key(None, _OPT_STR, doc="vocab.txt (or its folder); default "
                                           "data_dir/vocab.txt"),
    "max_seq_length": _Key(None, _OPT_INT, doc="tokens per example (pretraining: must match "
                                               "the shards)"),
    "seed": _Key(42, int, doc="seed of initialisation, masking, dropout and data order"),
    "mixed_precision": _Key("auto", str, ("auto", "float32", "mixed_bfloat16", "mixed_float16"),
                            doc="auto = bfloat16 on TPU, float16 on GPU, float32 on CPU"),
    "jit_compile": _Key(True, bool, doc="compile steps with XLA on CPU/GPU (a TPU compiles every step)"),
    # accelerator keys of the original; `use_tpu` selects TPUStrategy
    "use_tpu": _Key(False, bool, doc="train under TPUStrategy"),
    "num_tpu_cores": _Key(None, _OPT_INT, doc="TPU cores the run expects; checked against the "
                                              "slice (TF2 finds the cores itself)"),
    "tpu_name": _Key(None, _OPT_STR, doc='"" or "local" = the TPU of this VM; any other name '
                                         "is a remote TPU or a pod slice"),
    "tpu_type": _Key(None, _OPT_STR, doc="accelerator type of the slice (v3-8, v4-32, "
                                         "v5litepod-16, ...): --dry_run estimates per-core "
                                         "memory for it"),
    "tpu_zone": _Key(None, _OPT_STR, doc="GCE zone of a remote TPU"),
    "gcp_project": _Key(None, _OPT_STR, doc="GCP project of a remote TPU"),
    "tpu_job_name": _Key(None, _OPT_STR, doc="TPU cluster job name (default: the "
                                             "resolver's, 'worker')"),
    "model_name": _Key("electra_ko", str, doc="model_dir defaults to "
                                              "data_dir/models/<model_name>"),
    "debug": _Key(False, bool, doc="pretraining: a 20-step smoke run (batch 8, eval batch 4, "
                                   "1 step per loop, 2 eval steps), as the original"),
}

PRETRAIN = dict(_MODEL_KEYS, **{
    # objective
    "do_train": _Key(True, bool, doc="false = no training: only --do_eval on the latest "
                                     "checkpoint, as the original"),
    "do_eval": _Key(False, bool, doc="evaluate MLM and discriminator metrics on held-out "
                                     "shards at the end"),
    "init_checkpoint": _Key(None, _OPT_STR,
                            doc="continue pretraining from this checkpoint (ours, Hugging Face "
                                "or TF1; see electra_ko.warm_start); resuming model_dir wins"),
    "init_generator": _Key(None, _OPT_STR,
                           doc="Hugging Face generator folder pairing a discriminator-only "
                               "init_checkpoint"),
    "electra_objective": _Key(True, bool, doc="false = train the generator alone as a plain "
                                              "masked LM"),
    "gen_weight": _Key(1.0, float, doc="weight of the generator's MLM loss"),
    "disc_weight": _Key(50.0, float, doc="weight of the discriminator's replaced-token loss"),
    "mask_prob": _Key(None, _OPT_FLOAT, doc="share of tokens masked (0.15; large 0.25)"),
    "whole_word_masking": _Key(False, bool, doc="mask whole words (a token and its ## "
                                                "continuations) together"),
    "temperature": _Key(1.0, float, doc="sampling temperature of the generator"),
    # generator (keys of the original; unsupported variants are rejected in validation)
    "generator_hidden_size": _Key(None, _OPT_FLOAT, doc="generator width as a fraction of "
                                                        "the discriminator's"),
    "generator_layers": _Key(1.0, float, doc="generator depth as a fraction of the "
                                             "discriminator's"),
    "uniform_generator": _Key(False, bool, doc="the original's ablation: not supported"),
    "two_tower_generator": _Key(False, bool, doc="the original's ablation: not supported"),
    "untied_generator_embeddings": _Key(False, bool, doc="use embedding_sharing=untied"),
    "embedding_sharing": _Key(
        "tied", str, EMBEDDING_SHARING,
        doc="generator/discriminator embeddings: tied (google-research/electra), gdes "
            "(DeBERTaV3: the discriminator trains only a delta on the shared tables) or untied; "
            "a masked LM (electra_objective=false) has one embedding layer and ignores it"),
    "untied_generator": _Key(True, bool, doc="separate generator encoder (false: the "
                                             "original's shared-encoder ablation, unsupported)"),
    "disallow_correct": _Key(False, bool, doc="the original's option to never sample the "
                                              "original token: not supported"),
    # optimisation
    "learning_rate": _Key(None, _OPT_FLOAT, doc="peak learning rate (by model size)"),
    "lr_decay_power": _Key(1.0, float, doc="polynomial decay power after warm-up (1 = "
                                           "linear to 0)"),
    "weight_decay_rate": _Key(0.01, float, doc="AdamW decoupled weight decay (not on LayerNorm "
                                               "and biases)"),
    "num_warmup_steps": _Key(10000, int, doc="linear learning-rate warm-up steps"),
    "optimizer": _Key("adamw", str, ("adamw", "lamb"), doc="adamw or lamb"),
    "adam_beta1": _Key(0.9, float, doc="Adam first-moment decay"),
    "adam_beta2": _Key(0.999, float, doc="Adam second-moment decay"),
    "adam_epsilon": _Key(1e-6, float, doc="Adam epsilon"),
    "adam_bias_correction": _Key(False, bool,
                                 doc="AdamW corrects its moments' zero start (Keras, PyTorch); "
                                     "false = as google-research/electra, larger first steps"),
    "clip_norm": _Key(1.0, float, doc="global gradient-norm clip"),
    # training loop
    "num_train_steps": _Key(1000000, int, doc="total training steps"),
    "disc_health_check_steps": _Key(
        2000, int, doc="steps after warm-up at which a discriminator with precision and recall "
                       "still 0 gets one warning saying what to try (0 = never)"),
    "num_eval_steps": _Key(100, int, doc="batches evaluated by --do_eval"),
    "iterations_per_loop": _Key(200, int, doc="steps between progress lines and summaries"),
    "stop_check_secs": _Key(10.0, float,
                            doc="longest device call between checks for SIGTERM (a preempted "
                                "TPU gets ~30 s notice): the checkpoint of the current step "
                                "is saved within about this time"),
    "save_checkpoints_steps": _Key(1000, int, doc="steps between checkpoints"),
    "keep_checkpoint_max": _Key(5, int, doc="checkpoints kept (older ones deleted)"),
    "train_batch_size": _Key(None, _OPT_INT, doc="global batch, over all replicas (by model "
                                                 "size)"),
    "eval_batch_size": _Key(128, int, doc="global batch of --do_eval"),
    # paths (local or gs://); unset ones default under data_dir as in the original
    "data_dir": _Key(None, _OPT_STR, doc="folder the path keys default under"),
    "pretrain_tfrecords": _Key(None, _OPT_STR, doc="shard folder (or glob); default "
                                                   "data_dir/pretrain_tfrecords"),
    "model_dir": _Key(None, _OPT_STR, doc="checkpoints, summaries, exported towers"),
    "results_txt": _Key(None, _OPT_STR, doc="--do_eval metrics as text; default "
                                            "model_dir/eval_results.txt"),
    "results_pkl": _Key(None, _OPT_STR, doc="--do_eval metrics as a pickled dict, as the "
                                            "original (written, never read)"),
    # raw corpus -> vocab -> shards, run by the driver when no shards exist yet
    "corpus": _Key(None, _OPT_STR, doc="raw text: the driver builds vocab and shards first "
                                       "when they are missing"),
    "limit_alphabet": _Key(VocabSettings.limit_alphabet, int, doc="with corpus: WordPiece alphabet cap"),
    "min_frequency": _Key(VocabSettings.min_frequency, int, doc="with corpus: least count of a merged pair"),
    "num_unused": _Key(VocabSettings.num_unused, int, doc="with corpus: [unusedN] tokens reserved"),
    "num_shards": _Key(BuildSettings.num_shards, int, doc="with corpus: shards written"),
})

FINETUNE = dict(_MODEL_KEYS, **{
    "task": _Key("nsmc", str, doc="task name (see electra_ko.tasks)"),
    "learning_rate": _Key(None, _OPT_FLOAT, doc="None = by model size"),
    "layerwise_lr_decay": _Key(None, _OPT_FLOAT,
                               doc="None = by model size (0.8; tiny 1.0); a randomly "
                                   "initialised model always trains with 1"),
    "weight_decay_rate": _Key(0.01, float, doc="AdamW decoupled weight decay"),
    "warmup_proportion": _Key(0.1, float, doc="share of the steps spent warming up"),
    "num_train_epochs": _Key(3.0, float, doc="passes over the training set"),
    "train_batch_size": _Key(32, int, doc="global training batch"),
    "eval_batch_size": _Key(32, int, doc="global evaluation batch"),
    "iterations_per_loop": _Key(20, int, doc="training steps per device call (a TPU runs them "
                                            "without returning to the host)"),
    "adam_epsilon": _Key(1e-6, float, doc="Adam epsilon"),
    "clip_norm": _Key(1.0, float, doc="global gradient-norm clip"),
    "init_checkpoint": _Key(None, _OPT_STR, doc="pretrained model to start from (ours, Hugging "
                                                "Face or TF1)"),
    "data_dir": _Key(None, _OPT_STR, doc="folder holding the task's files"),
    "output_dir": _Key(None, _OPT_STR, doc="results.json, predictions.tsv and model/"),
})

# Pretraining defaults that follow model_size, besides its architecture
# (`architecture.SIZE_PRESETS`): the paper's values for small/base/large; tiny and debug
# are ours, for CPU runs and tests.
TRAINING_PRESETS = {
    "debug": dict(learning_rate=1e-3, train_batch_size=8, max_seq_length=64, mask_prob=0.15),
    "tiny": dict(learning_rate=1e-3, train_batch_size=32, max_seq_length=128, mask_prob=0.15),
    "small": dict(learning_rate=5e-4, train_batch_size=128, max_seq_length=128, mask_prob=0.15),
    "base": dict(learning_rate=2e-4, train_batch_size=256, max_seq_length=512, mask_prob=0.15),
    "large": dict(learning_rate=2e-4, train_batch_size=2048, max_seq_length=512, mask_prob=0.25),
}

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
        return architecture.generator_sizes(self.hidden_size, self.num_hidden_layers,
                                            self.generator_hidden_size, self.generator_layers)

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
        data = storage.read_json(path, ConfigError)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
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
    explicit |= _apply_debug(schema, resolved)
    _resolve_paths(resolved)
    _validate(resolved)
    return Config(schema, resolved, explicit)


def describe_keys(schema: Mapping[str, _Key]) -> str:
    """One line per key: name, default (`by size` when the size preset fills it), doc."""
    def default(key, spec):
        if spec.default is None and key in size_presets(schema, "small"):
            return "by model_size"
        return json.dumps(spec.default)
    width = max(map(len, schema))
    return "\n".join(f"{key:<{width}}  {default(key, spec):<15}  {spec.doc}"
                     for key, spec in sorted(schema.items()))


def size_presets(schema, model_size: str) -> dict:
    """The size-dependent defaults of `model_size` (fine-tuning's own for FINETUNE)."""
    presets = dict(architecture.SIZE_PRESETS[model_size], **TRAINING_PRESETS[model_size])
    if schema is FINETUNE:
        presets.update(FINETUNE_PRESETS[model_size])
    return presets


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
        if key not in architecture.HF_CONFIG_KEYS:
            raise ConfigError(f"unknown key {key!r} in model_hparam_overrides; "
                              f"known: {', '.join(architecture.HF_CONFIG_KEYS)}")
        resolved[key] = _coerce(schema[key], key, value, "model_hparam_overrides")
    return set(overrides)


# `debug: true` shrinks a pretraining run as google-research/electra's does, whatever
# else the config says.
DEBUG_RUN = dict(train_batch_size=8, num_train_steps=20, eval_batch_size=4,
                 iterations_per_loop=1, num_eval_steps=2)


def _apply_debug(schema, resolved):
    """Apply DEBUG_RUN when `debug` is set; returns the keys it set (they count as given)."""
    if not resolved["debug"]:
        return set()
    if schema is not PRETRAIN:
        raise ConfigError("config key 'debug' shrinks a pretraining run; fine-tuning has no "
                          "debug mode (use --max_train_examples and --epochs for a quick run)")
    resolved.update(DEBUG_RUN)
    return set(DEBUG_RUN)


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
    positive(*architecture.SIZE_KEYS, "max_seq_length", "train_batch_size", "eval_batch_size",
             "num_train_steps", "iterations_per_loop", "save_checkpoints_steps", "learning_rate",
             "num_train_epochs")
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
