"""Every weight name, and how to open any checkpoint.

Checkpoints travel as "towers": one per model (discriminator, generator, classifier), each
an `architecture.EncoderConfig` plus a dict of NumPy arrays under Hugging Face
`transformers` names in PyTorch layout. This module is the one place that knows

* the names: google-research/electra's TF1 names, which our Keras models also list
  (`tf1_weights()`), and transformers' names, paired by the tables below (a head adds
  its names to `HEADS`); `hf_name` converts one name;
* the layouts: TF1 and Keras kernels are [in, out], torch Linear weights [out, in]
  (`switch_layout`);
* the sources: `locate` tells once what a path holds (one of `FORMATS`: a checkpoint of our
  pretraining run, a folder of exported towers, a Hugging Face folder, a TF1 checkpoint),
  `read` / `open_checkpoint` turn it into towers, with the file that identifies it and the
  vocab it carries.

The exporter (`electra_ko.export`) only writes towers; fine-tuning and warm starts read
them through here. TensorFlow and the Keras models are imported only where they are used.
"""
import dataclasses
import os
import re
from typing import Optional

import numpy as np

from electra_ko import architecture, storage

# --------------------------------------------------------------------------- name tables

ENCODER_PREFIX = "electra."
DISCRIMINATOR, GENERATOR, CLASSIFIER, ENCODER = "discriminator", "generator", "classifier", "encoder"

# TF1 `<scope>/embeddings/<name>`  <->  HF `electra.embeddings.<name>`
EMBEDDINGS = [
    ("word_embeddings", "word_embeddings.weight"),
    ("position_embeddings", "position_embeddings.weight"),
    ("token_type_embeddings", "token_type_embeddings.weight"),
    ("LayerNorm/gamma", "LayerNorm.weight"),
    ("LayerNorm/beta", "LayerNorm.bias"),
]
# TF1 `<scope>/embeddings_project/<name>`  <->  HF `electra.embeddings_project.<name>`
# (present only when the embeddings are narrower than the tower's hidden size)
PROJECTION = [
    ("kernel", "weight"),
    ("bias", "bias"),
]
# TF1 `<scope>/encoder/layer_<i>/<name>`  <->  HF `electra.encoder.layer.<i>.<name>`
ENCODER_LAYER = [
    ("attention/self/query/kernel", "attention.self.query.weight"),
    ("attention/self/query/bias", "attention.self.query.bias"),
    ("attention/self/key/kernel", "attention.self.key.weight"),
    ("attention/self/key/bias", "attention.self.key.bias"),
    ("attention/self/value/kernel", "attention.self.value.weight"),
    ("attention/self/value/bias", "attention.self.value.bias"),
    ("attention/output/dense/kernel", "attention.output.dense.weight"),
    ("attention/output/dense/bias", "attention.output.dense.bias"),
    ("attention/output/LayerNorm/gamma", "attention.output.LayerNorm.weight"),
    ("attention/output/LayerNorm/beta", "attention.output.LayerNorm.bias"),
    ("intermediate/dense/kernel", "intermediate.dense.weight"),
    ("intermediate/dense/bias", "intermediate.dense.bias"),
    ("output/dense/kernel", "output.dense.weight"),
    ("output/dense/bias", "output.dense.bias"),
    ("output/LayerNorm/gamma", "output.LayerNorm.weight"),
    ("output/LayerNorm/beta", "output.LayerNorm.bias"),
]
# The heads, by the kind of model they make: full TF1 name  <->  full HF name. The one
# registry of head names: a model lists its head's weights under these TF1 names.
HEADS = {
    DISCRIMINATOR: [
        ("discriminator_predictions/dense/kernel", "discriminator_predictions.dense.weight"),
        ("discriminator_predictions/dense/bias", "discriminator_predictions.dense.bias"),
        ("discriminator_predictions/dense_1/kernel",
         "discriminator_predictions.dense_prediction.weight"),
        ("discriminator_predictions/dense_1/bias", "discriminator_predictions.dense_prediction.bias"),
    ],
    GENERATOR: [
        ("generator_predictions/dense/kernel", "generator_predictions.dense.weight"),
        ("generator_predictions/dense/bias", "generator_predictions.dense.bias"),
        ("generator_predictions/LayerNorm/gamma", "generator_predictions.LayerNorm.weight"),
        ("generator_predictions/LayerNorm/beta", "generator_predictions.LayerNorm.bias"),
        ("generator_predictions/output_bias", "generator_lm_head.bias"),
    ],
    # transformers' ElectraClassificationHead (`classifier.SequenceClassifier`); TF1
    # pretraining checkpoints hold none
    CLASSIFIER: [
        ("classifier/dense/kernel", "classifier.dense.weight"),
        ("classifier/dense/bias", "classifier.dense.bias"),
        ("classifier/out_proj/kernel", "classifier.out_proj.weight"),
        ("classifier/out_proj/bias", "classifier.out_proj.bias"),
    ],
}
# The MLM output matrix is the word-embedding matrix (tied in ELECTRA and in transformers).
TIED_LM_WEIGHT = "generator_lm_head.weight"
# config.json key of our exports of a plain masked LM (transformers keeps unknown keys).
MASKED_LM_KEY = "electra_ko_masked_lm"
WORD_EMBEDDINGS = ENCODER_PREFIX + "embeddings.word_embeddings.weight"
# The HF names of the embedding tensors (tables and their LayerNorm).
EMBEDDING_NAMES = tuple(f"{ENCODER_PREFIX}embeddings.{hf}" for _, hf in EMBEDDINGS)
# The embedding tables (word, position, token type), which both towers of a pair share.
TABLES = tuple(f"{ENCODER_PREFIX}embeddings.{hf}" for tf1, hf in EMBEDDINGS
               if tf1.endswith("_embeddings"))

# TF1 scope of each tower's encoder. Both towers share `electra/embeddings` unless the
# generator was trained with untied embeddings (`generator/embeddings`).
TF1_SCOPES = {DISCRIMINATOR: "electra", GENERATOR: "generator"}
TF1_IGNORED = re.compile(r"(^global_step$)|(/adam_[mv]$)")
_TF1_ENCODER_NAME = re.compile(r"(?:electra|generator)/(embeddings|embeddings_project|"
                               r"encoder/layer_(\d+))/(.+)")
_HF_HEAD_NAMES = {tf1: hf for pairs in HEADS.values() for tf1, hf in pairs}
# The files of a TF1 checkpoint as we write it (`write_tf1_checkpoint`).
TF1_CHECKPOINT, TF1_STATE_FILE = "model.ckpt", "checkpoint"
TF1_FILES = (TF1_CHECKPOINT + ".index", TF1_CHECKPOINT + ".data-00000-of-00001", TF1_STATE_FILE)

HF_CONFIG = "config.json"
HF_SAFETENSORS = "model.safetensors"
HF_SAFETENSORS_INDEX = "model.safetensors.index.json"
HF_PYTORCH = "pytorch_model.bin"
HF_WEIGHT_FILES = (HF_SAFETENSORS, HF_SAFETENSORS_INDEX, HF_PYTORCH)


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model (the message says which names)."""


@dataclasses.dataclass
class Tower:
    """One model of a checkpoint: its sizes, its weights under HF names, a classifier's labels
    (None for regression). `masked_lm` marks a plain masked LM (`electra_objective: false`):
    a generator-kind model that is the pretrained model itself, not an ELECTRA generator."""
    kind: str
    config: architecture.EncoderConfig
    tensors: dict
    labels: Optional[tuple] = None
    masked_lm: bool = False


# --------------------------------------------------------------------------- names and layouts


def hf_name(tf1_name):
    """(HF name, transposed?) of a TF1 name, by the tables above: "electra/encoder/layer_3/
    output/dense/kernel" -> ("electra.encoder.layer.3.output.dense.weight", True). Both
    towers' encoders are `electra.` in transformers (ElectraForMaskedLM's too); the bool
    says the torch tensor is the transpose of ours (`switch_layout`)."""
    transposed = is_kernel(tf1_name)
    if tf1_name in _HF_HEAD_NAMES:
        return _HF_HEAD_NAMES[tf1_name], transposed
    match = _TF1_ENCODER_NAME.fullmatch(tf1_name)
    if match:
        part, layer, leaf = match.groups()
        hf_part, table = ((f"encoder.layer.{layer}", ENCODER_LAYER) if layer is not None else
                          (part, EMBEDDINGS if part == "embeddings" else PROJECTION))
        names = dict(table)
        if leaf in names:
            return f"{ENCODER_PREFIX}{hf_part}.{names[leaf]}", transposed
    raise CheckpointError(f"{tf1_name}: no Hugging Face name for this TF1 name")


def tf1_tower_names(tower, num_layers, has_projection, embeddings_scope):
    """(TF1 name, HF name) for every tensor of one tower of a google-research checkpoint."""
    scope = TF1_SCOPES[tower]
    pairs = [(f"{embeddings_scope}/embeddings/{tf1}", f"{ENCODER_PREFIX}embeddings.{hf}")
             for tf1, hf in EMBEDDINGS]
    if has_projection:
        pairs += [(f"{scope}/embeddings_project/{tf1}", f"{ENCODER_PREFIX}embeddings_project.{hf}")
                  for tf1, hf in PROJECTION]
    for i in range(num_layers):
        pairs += [(f"{scope}/encoder/layer_{i}/{tf1}", f"{ENCODER_PREFIX}encoder.layer.{i}.{hf}")
                  for tf1, hf in ENCODER_LAYER]
    return pairs + HEADS[tower]


def is_kernel(tf1_name):
    """A Dense kernel: transposed in torch (the only tensors that are)."""
    return tf1_name.endswith("/kernel")


def switch_layout(value, transposed):
    """Dense kernels are [in, out] in TF1 and Keras and [out, in] in torch: the same
    transpose converts either way. Always a float32 copy in C order, never a view."""
    value = np.asarray(value, dtype=np.float32)
    return np.ascontiguousarray(value.T if transposed else value)


def hf_weights(tf1_weights):
    """[(HF name, variable, transposed?)] of a model's `tf1_weights()`."""
    rows = []
    for tf1_name, variable in tf1_weights:
        name, transposed = hf_name(tf1_name)
        rows.append((name, variable, transposed))
    return rows


def hf_tensors(tf1_weights):
    """{HF name: array in torch layout} of a model's `tf1_weights()`."""
    return {name: switch_layout(variable.numpy(), transposed)
            for name, variable, transposed in hf_weights(tf1_weights)}


def check_names(expected, present, source):
    """Every tensor accounted for: missing or unexpected names are an error listing them."""
    missing = sorted(set(expected) - set(present))
    unexpected = sorted(set(present) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: tensors do not match the model.\n"
            f"  missing ({len(missing)}): {', '.join(missing) or '-'}\n"
            f"  unexpected ({len(unexpected)}): {', '.join(unexpected) or '-'}")


# --------------------------------------------------------------------------- Keras models


def build_model(kind, config, labels=None):
    """A fresh Keras model of a tower's kind (`modeling.DiscriminatorModel`,
    `modeling.GeneratorModel`, `classifier.ClassifierModel`; regression, labels None, has
    one output). Each lists its weights in `tf1_weights()` and takes a features dict."""
    if kind == CLASSIFIER:
        from electra_ko import classifier  # needed only for classifiers

        return classifier.ClassifierModel(config, len(labels) if labels else 1, name=kind)
    from electra_ko import modeling

    models = {DISCRIMINATOR: modeling.DiscriminatorModel, GENERATOR: modeling.GeneratorModel}
    return models[kind](config, name=kind)


def tower_from_model(kind, model, labels=None):
    """Tower of a Keras model (one of `build_model`'s): its weights as HF-layout arrays."""
    return Tower(kind, model.encoder_config, hf_tensors(model.tf1_weights()), labels)


def model_from_tower(tower):
    """A Keras model holding the tower's weights; every tensor must be used exactly once."""
    model = build_model(tower.kind, tower.config, tower.labels)
    rows = hf_weights(model.tf1_weights())
    tensors = _without_tied_lm_weight(tower.tensors)
    check_names([name for name, _, _ in rows], tensors, f"{tower.kind} weights")
    for name, variable, transposed in rows:
        value = switch_layout(tensors[name], transposed)
        if value.shape != tuple(variable.shape):
            raise CheckpointError(
                f"{name}: shape {value.shape} does not fit the model's {tuple(variable.shape)}")
        variable.assign(value)
    return model


def _without_tied_lm_weight(tensors):
    """`generator_lm_head.weight` is the word-embedding matrix; accept it only if it is."""
    tied = tensors.get(TIED_LM_WEIGHT)
    if tied is None:
        return tensors
    if not np.array_equal(tied, tensors.get(WORD_EMBEDDINGS)):
        raise CheckpointError(
            f"{TIED_LM_WEIGHT} differs from {WORD_EMBEDDINGS}: untied "
            f"generator output embeddings are not supported")
    return {k: v for k, v in tensors.items() if k != TIED_LM_WEIGHT}


def embedding_deltas(model):
    """[(HF name of a discriminator table, its gdes delta variable)] of a
    `modeling.ElectraPretrainer`; empty unless gdes. The discriminator's exported table
    is the shared one plus the delta."""
    if model.embedding_deltas is None:
        return []
    return [(hf_name(name)[0], delta)
            for name, delta in model.embedding_deltas.tf1_weights("electra/embeddings")]


def tower_from_pretrainer(model, part):
    """The discriminator or generator of a `modeling.ElectraPretrainer` as a tower (a
    generator's tied `generator_lm_head.weight` is its word embeddings, listed under
    those); a gdes discriminator's tables are the shared ones plus its deltas (a standard
    model)."""
    config = model.discriminator_config if part == DISCRIMINATOR else (
        model.generator_config or model.discriminator_config)
    tensors = hf_tensors(model.tf1_weights(part))
    if part == DISCRIMINATOR:
        for name, delta in embedding_deltas(model):
            tensors[name] = tensors[name] + delta.numpy()
    return Tower(part, config, tensors, masked_lm=not model.electra_objective)


def pretrainer_towers(model):
    """The towers of a `modeling.ElectraPretrainer`: its discriminator and generator, or a
    masked LM's one model (a generator)."""
    parts = [DISCRIMINATOR, GENERATOR] if model.electra_objective else [GENERATOR]
    return [tower_from_pretrainer(model, part) for part in parts]


# --------------------------------------------------------------------------- TF1 checkpoints


def read_tf1_checkpoint(path):
    """{tower: HF-named arrays} for the discriminator and/or generator found in `path`."""
    import tensorflow as tf  # imported where it is used: reading names needs none

    try:
        reader = tf.train.load_checkpoint(path)
    except (tf.errors.OpError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable TF checkpoint ({err})") from None
    names = [n for n in reader.get_variable_to_shape_map() if not TF1_IGNORED.search(n)]
    layouts = {tower: _tf1_layout(tower, names) for tower in TF1_SCOPES}
    layouts = {tower: pairs for tower, pairs in layouts.items() if pairs is not None}
    if not layouts:
        raise CheckpointError(f"{path}: no google-research/electra tower found (expected "
                              f"variables like electra/encoder/layer_0/... or generator/encoder/...)")
    check_names({tf1 for pairs in layouts.values() for tf1, _ in pairs}, names, path)
    return {tower: {hf: switch_layout(reader.get_tensor(tf1), is_kernel(tf1)) for tf1, hf in pairs}
            for tower, pairs in layouts.items()}


def read_tf1_towers(prefix, num_attention_heads, **encoder_keys):
    """Towers of a TF1 checkpoint (its file prefix: `locate` finds it in a directory).

    Shapes give every size but the number of attention heads, which the caller passes (from
    --config/--set); the generator's follow google-research/electra's rule
    (`architecture.generator_heads`).
    """
    towers = []
    for kind, tensors in read_tf1_checkpoint(prefix).items():
        sizes = infer_sizes(tensors)
        heads = (num_attention_heads if kind == DISCRIMINATOR
                 else architecture.generator_heads(sizes["hidden_size"]))
        try:
            config = architecture.EncoderConfig(num_attention_heads=heads, **sizes, **encoder_keys)
        except ValueError as err:
            raise CheckpointError(f"{prefix} ({kind}): {err}") from None
        towers.append(Tower(kind, config, tensors))
    return towers


def _tf1_layout(tower, names):
    """The tower's (TF1, HF) name pairs as the checkpoint's names describe it, or None."""
    scope = TF1_SCOPES[tower]
    layers = {int(m.group(1)) for n in names
              if (m := re.match(rf"{scope}/encoder/layer_(\d+)/", n))}
    if not layers:
        return None
    untied = f"{scope}/embeddings/word_embeddings" in names
    return tf1_tower_names(tower, max(layers) + 1,
                           has_projection=f"{scope}/embeddings_project/kernel" in names,
                           embeddings_scope=scope if untied else TF1_SCOPES[DISCRIMINATOR])


def tf1_variables(towers):
    """{TF1 name: array} of a discriminator, alone or with its generator, in google-research/
    electra's layout: the inverse of `read_tf1_checkpoint`. The towers share `electra/
    embeddings` when their tables are equal (`tied`); otherwise the generator's go under
    `generator/embeddings` (`untied`, and `gdes`, whose discriminator tables hold their deltas)."""
    by_kind = {tower.kind: tower for tower in towers}
    if DISCRIMINATOR not in by_kind or set(by_kind) - set(TF1_SCOPES) or any(
            tower.masked_lm for tower in towers):
        raise CheckpointError(
            "a TF1 checkpoint holds an ELECTRA discriminator, with or without its generator; "
            f"this model is: {', '.join(t.kind + (' (masked LM)' if t.masked_lm else '') for t in towers)}"
            " (export it as huggingface or saved_model)")
    disc = by_kind[DISCRIMINATOR].tensors
    shared = GENERATOR not in by_kind or all(
        np.array_equal(disc[name], by_kind[GENERATOR].tensors.get(name)) for name in EMBEDDING_NAMES)
    variables = {}
    for kind, tower in by_kind.items():
        tensors = _without_tied_lm_weight(tower.tensors)
        pairs = tf1_tower_names(
            kind, tower.config.num_hidden_layers,
            has_projection=f"{ENCODER_PREFIX}embeddings_project.weight" in tensors,
            embeddings_scope=TF1_SCOPES[DISCRIMINATOR if shared else kind])
        check_names([hf for _, hf in pairs], tensors, f"{kind} weights")
        variables.update({tf1: switch_layout(tensors[hf], is_kernel(tf1)) for tf1, hf in pairs})
    return variables


def write_tf1_checkpoint(towers, directory):
    """`directory`/model.ckpt (.index, .data-*) and its `checkpoint` file, as
    `tf.compat.v1.train.Saver` writes them: what google-research/electra's `init_checkpoint`
    reads, and `locate` finds as TF1. `directory` is local (exports stage gs:// locally)."""
    import tensorflow as tf

    variables = tf1_variables(towers)
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=os.path.join(directory, TF1_CHECKPOINT), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=[variables[n] for n in names])
    storage.write_text(os.path.join(directory, TF1_STATE_FILE),
                       f'model_checkpoint_path: "{TF1_CHECKPOINT}"\n'
                       f'all_model_checkpoint_paths: "{TF1_CHECKPOINT}"\n')
    return directory


# --------------------------------------------------------------------------- HF directories


def read_hf_dir(path):
    """(config dict, HF-named arrays with the `electra.` prefix) of a transformers directory,
    local or gs://."""
    config = _read_json(storage.join(path, HF_CONFIG))
    if config.get("model_type") != "electra":
        raise CheckpointError(f"{storage.join(path, HF_CONFIG)}: model_type is "
                              f"{config.get('model_type')!r}, expected 'electra'")
    return config, _with_encoder_prefix(_read_hf_tensors(path))


def read_hf_tower(path):
    """The one model a transformers ELECTRA directory holds, local or gs://."""
    config, tensors = read_hf_dir(path)
    kind = hf_tower_kind(tensors)
    labels = None
    if kind == CLASSIFIER and config.get("problem_type") != "regression":
        id2label = config.get("id2label") or {}
        labels = tuple(id2label[key] for key in sorted(id2label, key=int))
    return Tower(kind, encoder_config_from_hf(config, storage.join(path, HF_CONFIG)), tensors,
                 labels, masked_lm=bool(config.get(MASKED_LM_KEY)))


def encoder_config_from_hf(config, source):
    """An EncoderConfig from transformers' ElectraConfig keys (which keep BERT's names)."""
    if config.get("hidden_act", "gelu") not in architecture.HIDDEN_ACTS:
        raise CheckpointError(f"{source}: hidden_act {config['hidden_act']!r} is not supported "
                              f"(electra_ko models use exact GELU, 'gelu')")
    try:
        return architecture.EncoderConfig(**{k: v for k, v in config.items()
                                             if k in architecture.ARCHITECTURE_KEYS})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: {err}") from None


def hf_tower_kind(tensors):
    """Which model class the tensors belong to, judged by their head (the first scope of
    its names in `HEADS`)."""
    for kind, pairs in HEADS.items():
        head = pairs[0][1].split(".")[0] + "."
        if any(name.startswith(head) for name in tensors):
            return kind
    return ENCODER


def _read_hf_tensors(path):
    safetensors_file = storage.join(path, HF_SAFETENSORS)
    index_file = storage.join(path, HF_SAFETENSORS_INDEX)
    if storage.exists(safetensors_file):
        return _read_safetensors([safetensors_file])
    if storage.exists(index_file):
        shards = sorted(set(_read_json(index_file).get("weight_map", {}).values()))
        return _read_safetensors([storage.join(path, shard) for shard in shards])
    if storage.exists(storage.join(path, HF_PYTORCH)):
        return _read_pytorch_bin(storage.join(path, HF_PYTORCH))
    raise CheckpointError(f"{path}: no {HF_SAFETENSORS}, {HF_SAFETENSORS_INDEX} or {HF_PYTORCH}")


def _read_safetensors(files):
    from safetensors.numpy import load_file

    tensors = {}
    for file in files:
        with storage.local_copy(file) as local:  # safetensors reads local files only
            try:
                tensors.update(load_file(local))
            except (OSError, ValueError) as err:
                raise CheckpointError(f"{file}: not a readable safetensors file ({err})") from None
    return {name: value.astype(np.float32) for name, value in tensors.items()}


def _read_pytorch_bin(file):
    """A pickle: read only with torch's weights-only unpickler, never arbitrary objects."""
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{file} is a PyTorch pickle and PyTorch is not installed. Install torch "
            f"(pip install 'electra_ko[hf]') or convert the folder to {HF_SAFETENSORS} "
            f"first.") from None
    with storage.local_copy(file) as local:
        try:
            state = torch.load(local, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError ...
            raise CheckpointError(f"{file}: refused or unreadable by torch.load("
                                  f"weights_only=True): {err}") from None
    return {name: value.float().numpy() for name, value in state.items()}


def _with_encoder_prefix(tensors):
    """ElectraModel saves its encoder without the `electra.` prefix the heads' classes use."""
    head_free = not any(name.startswith(ENCODER_PREFIX) for name in tensors)
    return {ENCODER_PREFIX + name if head_free else name: value
            for name, value in tensors.items()}


def _read_json(path):
    try:
        return storage.read_json(path, CheckpointError)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None


# --------------------------------------------------------------------------- sizes

# Where each size the shapes tell is read (`architecture.SHAPE_KEYS`): a tensor and its
# axis; the layers are counted.
_SIZE_SOURCES = {
    "vocab_size": (WORD_EMBEDDINGS, 0),
    "embedding_size": (WORD_EMBEDDINGS, 1),
    "hidden_size": (f"{ENCODER_PREFIX}encoder.layer.0.attention.self.query.weight", 0),
    "intermediate_size": (f"{ENCODER_PREFIX}encoder.layer.0.intermediate.dense.weight", 0),
    "max_position_embeddings": (f"{ENCODER_PREFIX}embeddings.position_embeddings.weight", 0),
    "type_vocab_size": (f"{ENCODER_PREFIX}embeddings.token_type_embeddings.weight", 0),
}


def infer_sizes(tensors):
    """The architecture sizes that the tensor shapes determine (`architecture.SHAPE_KEYS`;
    not heads or activation)."""
    _require(tensors, WORD_EMBEDDINGS)
    layers = {int(m.group(1)) for n in tensors
              if (m := re.match(r"electra\.encoder\.layer\.(\d+)\.", n))}
    if not layers:
        raise CheckpointError("no encoder layers (electra.encoder.layer.0...) in the checkpoint")

    def size(key):
        if key == "num_hidden_layers":
            return max(layers) + 1
        name, axis = _SIZE_SOURCES[key]
        return int(_require(tensors, name).shape[axis])
    return {key: size(key) for key in architecture.SHAPE_KEYS}


def _require(tensors, name):
    if name not in tensors:
        raise CheckpointError(f"checkpoint lacks {name}")
    return tensors[name]


# --------------------------------------------------------------------------- any source

TRAINING, FOLDERS, HUGGINGFACE, TF1 = "training", "folders", "huggingface", "tf1"
FORMATS = (TRAINING, FOLDERS, HUGGINGFACE, TF1)
# Where our runs keep Hugging Face towers: a pretraining model_dir's exported pair, a
# fine-tuning output_dir's model.
MODEL_SUBDIRS = (DISCRIMINATOR, GENERATOR, "model")
NOT_A_CHECKPOINT = ("{path}: neither a Hugging Face directory (no " + HF_CONFIG + ") nor a TF "
                    "checkpoint (no `checkpoint` file, no .index)")


@dataclasses.dataclass(frozen=True)
class Location:
    """What a path holds, as `locate` found it: its format (one of `FORMATS`) and what is
    read, a checkpoint prefix (TRAINING, TF1) or a folder (HUGGINGFACE); for FOLDERS the
    tower folders in it."""
    format: str
    path: str
    folders: tuple = ()

    def identity(self):
        """The file whose sha256 identifies the checkpoint: a TF checkpoint's `.index`, a
        Hugging Face folder's weights file."""
        if self.format in (TRAINING, TF1):
            return self.path + ".index"
        folder = self.folders[0] if self.folders else self.path
        return next(file for file in (storage.join(folder, name) for name in HF_WEIGHT_FILES)
                    if storage.exists(file))

    def vocab(self):
        """The vocab the checkpoint comes with, or None: the one a pretraining run's
        config.json names, a Hugging Face folder itself (it holds vocab.txt), the folder of
        a TF1 checkpoint when it holds a vocab.txt (as google-research/electra's published
        ones do)."""
        from electra_ko import model_dir as model_dir_lib
        from electra_ko import vocab as vocab_lib

        if self.format == TRAINING:
            return model_dir_lib.run_config(os.path.dirname(self.path)).vocab_file
        if self.format != TF1:
            return (self.folders or (self.path,))[0]
        folder = os.path.dirname(self.path)
        return folder if storage.exists(storage.join(folder, vocab_lib.VOCAB_FILE)) else None


def exists(path):
    """A folder, file or TF checkpoint prefix (`path.index`) at `path`, local or gs://."""
    return storage.exists(path) or storage.exists(path + ".index")


def locate(path, step=None, exported_first=False, required=False):
    """What `path` holds, decided here once for every reader:

        TRAINING     one of our pretraining model_dirs (its newest `ckpt-<step>`, or the one
                     of `step`) or one of its `ckpt-<step>` prefixes
        HUGGINGFACE  a transformers ELECTRA folder (its config.json has a model_type)
        FOLDERS      a folder of such folders (`MODEL_SUBDIRS`): a pretraining model_dir's
                     exported discriminator/ and generator/, a fine-tuning output_dir
        TF1          a google-research/electra checkpoint: a file prefix, or a directory
                     with a `checkpoint` file

    A finished pretraining model_dir is both TRAINING and FOLDERS (the exported towers are
    its last checkpoint): its checkpoint is taken, its folders with `exported_first`.
    `step` asks for one checkpoint of a pretraining run (TRAINING or nothing). None when
    the path is none of these, or a CheckpointError with `required`.
    """
    location = _locate(path, step, exported_first)
    if location is None and required:
        raise CheckpointError(NOT_A_CHECKPOINT.format(path=path))
    return location


def _locate(path, step, exported_first):
    import tensorflow as tf

    from electra_ko import model_dir as model_dir_lib

    folders = tuple(storage.join(path, sub) for sub in MODEL_SUBDIRS
                    if storage.exists(storage.join(path, sub, HF_CONFIG)))
    if folders and exported_first and step is None:
        return Location(FOLDERS, path, folders)
    prefix = model_dir_lib.find_checkpoint(path, step)
    if prefix or step is not None:
        return Location(TRAINING, prefix) if prefix else None
    if storage.exists(storage.join(path, HF_CONFIG)) and not model_dir_lib.is_run_dir(path):
        return Location(HUGGINGFACE, path)
    if folders:
        return Location(FOLDERS, path, folders)
    prefix = tf.train.latest_checkpoint(path) if storage.isdir(path) else path
    return Location(TF1, prefix) if prefix and storage.exists(prefix + ".index") else None


@dataclasses.dataclass
class Checkpoint:
    """An opened checkpoint: its towers, where they came from (`location`), and the
    fine-tuning `max_seq_length` a fine-tuned model's config.json records."""
    location: Location
    towers: list
    max_seq_length: Optional[int] = None

    @property
    def path(self):
        return self.location.path

    @property
    def identity(self):
        return self.location.identity()

    @property
    def vocab(self):
        return self.location.vocab()


def read(location, cfg=None):
    """The towers at a `locate`d location. A TF1 checkpoint records neither the attention
    heads nor dropout, initializer range and LayerNorm epsilon: they come from `cfg`."""
    if location.format == TRAINING:
        return Checkpoint(location, read_training_checkpoint(location.path))
    if location.format == TF1:
        if cfg is None:
            raise CheckpointError(f"{location.path}: a TF1 checkpoint does not record the "
                                  "number of attention heads: give num_attention_heads")
        return Checkpoint(location, read_tf1_towers(
            location.path, cfg.num_attention_heads, hidden_dropout_prob=cfg.hidden_dropout_prob,
            attention_probs_dropout_prob=cfg.attention_probs_dropout_prob,
            initializer_range=cfg.initializer_range, layer_norm_eps=cfg.layer_norm_eps))
    folders = location.folders or (location.path,)
    return Checkpoint(location, [read_hf_tower(folder) for folder in folders],
                      _recorded_max_seq_length(folders[0]))


def open_checkpoint(path, cfg=None):
    """The towers of any checkpoint (`locate`'s formats; `path` may be on gs://), read as
    `read` reads them. The one reader of `--init_checkpoint` for export, fine-tuning and
    warm starts."""
    return read(locate(path, required=True), cfg)


def read_model_dir(path, step=None):
    """One of our model directories (the exporter's --model_dir): a pretraining `model_dir`
    (its exported towers, which are its last checkpoint; without them, or with `step`, its
    newest checkpoint or the one of `step`) or one of its `ckpt-<step>`, a fine-tuning
    `output_dir`, or one exported model."""
    location = locate(path, step, exported_first=True)
    if location is None and step is not None:
        raise CheckpointError(f"--checkpoint_step {step}: {path} is not a pretraining model_dir")
    if location is None or location.format == TF1:
        raise CheckpointError(
            f"--model_dir {path}: no {HF_CONFIG} in it or in its "
            f"{', '.join(s + '/' for s in MODEL_SUBDIRS)} subdirectories, and no "
            f"checkpoint of a pretraining run")
    return read(location)


def read_training_checkpoint(prefix):
    """The towers of a pretraining run's checkpoint (`model_dir.find_checkpoint`): the model
    its config.json describes, restored."""
    from electra_ko import model_dir as model_dir_lib

    model, _ = model_dir_lib.restore_pretrainer(prefix)
    return pretrainer_towers(model)


def _recorded_max_seq_length(folder):
    recorded = storage.read_json(storage.join(folder, HF_CONFIG), CheckpointError)
    return (recorded.get("electra_ko") or {}).get("max_seq_length")
