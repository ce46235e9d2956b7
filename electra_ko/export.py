"""Export ELECTRA models: `python -m electra_ko.export --format huggingface|saved_model|tf1`.

Every source (a pretraining `model_dir` or one of its checkpoints, a fine-tuned model, a
Hugging Face directory or a google-research/electra TF1 checkpoint) is read by
`electra_ko.checkpoints` into "towers": one per model (discriminator, generator,
classifier), each an `EncoderConfig` plus a dict of NumPy arrays under Hugging Face
`transformers` names in PyTorch layout. This module only writes them: the Hugging Face
writer copies a tower to disk (its config.json keys are `architecture.HF_CONFIG_KEYS`);
the SavedModel writer loads it into a Keras model (`checkpoints.model_from_tower`); the TF1
writer (`checkpoints.write_tf1_checkpoint`) names a pair as google-research/electra does.
"""
import sys

import tensorflow as tf
from absl import app, flags
from tokenizers import processors

from electra_ko import architecture, checkpoints, storage
from electra_ko import config as config_lib
from electra_ko import vocab as vocab_lib
from electra_ko.checkpoints import CLASSIFIER, DISCRIMINATOR, GENERATOR

HF_ARCHITECTURES = {DISCRIMINATOR: "ElectraForPreTraining", GENERATOR: "ElectraForMaskedLM",
                    CLASSIFIER: "ElectraForSequenceClassification"}
HF_TOKENIZER_JSON = "tokenizer.json"
HF_TOKENIZER_CONFIG, HF_SPECIAL_TOKENS = "tokenizer_config.json", "special_tokens_map.json"
VOCAB_FILES = (vocab_lib.VOCAB_FILE, vocab_lib.META_FILE, vocab_lib.SPM_FILE)
ASSETS_EXTRA = "assets.extra"  # a SavedModel's folder for files TensorFlow does not read
SAVED_MODEL_NAMES = (tf.saved_model.SAVED_MODEL_FILENAME_PB, "fingerprint.pb",
                     tf.saved_model.VARIABLES_DIRECTORY, tf.saved_model.ASSETS_DIRECTORY,
                     ASSETS_EXTRA)
# Every top-level name an export may write (a Hugging Face folder's files, one folder per
# tower, a SavedModel's): an export into a used folder removes those it does not write.
EXPORT_NAMES = ((checkpoints.HF_CONFIG, checkpoints.HF_SAFETENSORS, HF_TOKENIZER_JSON,
                 HF_TOKENIZER_CONFIG, HF_SPECIAL_TOKENS) + VOCAB_FILES
                + tuple(HF_ARCHITECTURES) + SAVED_MODEL_NAMES + checkpoints.TF1_FILES)
SAVED_MODEL = "saved_model"
FORMATS = (checkpoints.HUGGINGFACE, SAVED_MODEL, checkpoints.TF1)  # --format


# --------------------------------------------------------------------------- Hugging Face


def hf_config(tower, special_ids, extra=None):
    """A `config.json` that transformers' ElectraConfig reads with no custom code; `extra`
    adds keys of our own (a fine-tuned model's task, under "electra_ko")."""
    config = {"architectures": [HF_ARCHITECTURES[tower.kind]], "model_type": "electra"}
    config.update({key: getattr(tower.config, key) for key in architecture.HF_CONFIG_KEYS})
    config.update({"position_embedding_type": "absolute", "pad_token_id": special_ids["pad"],
                   "tie_word_embeddings": True})
    if tower.kind == CLASSIFIER:
        config.update(_classifier_labels(tower.labels))
    if tower.masked_lm:
        config[checkpoints.MASKED_LM_KEY] = True
    config.update(extra or {})
    return config


def _classifier_labels(labels):
    if labels is None:  # a regression task (KorSTS): one output, no label names
        return {"num_labels": 1, "problem_type": "regression"}
    return {"id2label": {str(i): label for i, label in enumerate(labels)},
            "label2id": {label: i for i, label in enumerate(labels)},
            "problem_type": "single_label_classification"}


def tokenizer_files(tokenizer, max_seq_length):
    """tokenizer_config.json / special_tokens_map.json matching the training tokenizer.

    The class is PreTrainedTokenizerFast, which runs tokenizer.json as written: transformers'
    ElectraTokenizer rebuilds the pipeline from vocab.txt with a 100-char word limit.
    """
    special = {key + "_token": tokenizer.tokens[i] for key, i in tokenizer.special_ids.items()}
    config = dict(special, tokenizer_class="PreTrainedTokenizerFast",
                  do_lower_case=tokenizer.do_lower_case,
                  strip_accents=tokenizer.do_lower_case,
                  tokenize_chinese_chars=True, model_max_length=max_seq_length)
    return {HF_TOKENIZER_CONFIG: config, HF_SPECIAL_TOKENS: special}


def fast_tokenizer_json(tokenizer):
    """The training pipeline itself (WordPiece: incl. the 200-char word limit, which
    transformers' own converter would set to 100; SentencePiece: rebuilt from spm.model)
    plus BERT's [CLS]/[SEP] template."""
    ids, tokens = tokenizer.special_ids, tokenizer.tokens
    pipeline = tokenizer.pipeline()
    cls, sep = tokens[ids["cls"]], tokens[ids["sep"]]
    pipeline.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, ids["cls"]), (sep, ids["sep"])])
    return pipeline.to_str()


def write_huggingface(tower, vocab_path, output_dir, max_seq_length=None, extra_config=None):
    """A directory that `transformers` loads with `<Architecture>.from_pretrained(dir)`
    (local or gs://, each file written atomically; the CLIs pass a `storage.staged_output`
    folder, so that the whole export appears at once)."""
    from safetensors.numpy import save_file

    tokenizer = vocab_lib.load_tokenizer(vocab_path)
    if tokenizer.vocab_size != tower.config.vocab_size:
        raise ValueError(f"{vocab_path}: {tokenizer.vocab_size} tokens, but the model has "
                         f"vocab_size {tower.config.vocab_size}")
    storage.makedirs(output_dir)
    with storage.local_output(storage.join(output_dir, checkpoints.HF_SAFETENSORS)) as local:
        save_file(tower.tensors, local, metadata={"format": "pt"})
    files = {checkpoints.HF_CONFIG: hf_config(tower, tokenizer.special_ids, extra_config)}
    files.update(tokenizer_files(tokenizer, max_seq_length or tower.config.max_position_embeddings))
    for name, content in files.items():
        storage.write_json(storage.join(output_dir, name), content)
    copy_vocab_files(vocab_path, output_dir)
    storage.write_text(storage.join(output_dir, HF_TOKENIZER_JSON), fast_tokenizer_json(tokenizer))
    return output_dir


def copy_vocab_files(vocab_path, output_dir):
    """vocab.txt byte for byte, with vocab_meta.json (which records its sha256) and spm.model;
    either end may be on gs://."""
    vocab_dir, _ = vocab_lib.vocab_paths(vocab_path)
    for name in VOCAB_FILES:
        source = storage.join(vocab_dir, name)
        if storage.exists(source):
            storage.copy(source, storage.join(output_dir, name))


# --------------------------------------------------------------------------- SavedModel


def write_saved_model(tower, vocab_path, output_dir, max_seq_length):
    """A SavedModel whose signatures take raw strings (see `serving.ServingModule`)."""
    from electra_ko import serving

    module = serving.ServingModule(serving.InGraphTokenizer(vocab_path, max_seq_length),
                                   checkpoints.model_from_tower(tower), tower.kind, tower.labels)
    tf.saved_model.save(module, output_dir, signatures=module.signatures())
    storage.makedirs(storage.join(output_dir, ASSETS_EXTRA))
    copy_vocab_files(vocab_path, storage.join(output_dir, ASSETS_EXTRA))
    return output_dir


def serving_tower(towers):
    """The model a SavedModel serves: a classifier, else the discriminator."""
    for kind in (CLASSIFIER, DISCRIMINATOR):
        for tower in towers:
            if tower.kind == kind:
                return tower
    raise checkpoints.CheckpointError(
        f"nothing to serve: found {', '.join(t.kind for t in towers)}; a SavedModel needs a "
        f"discriminator or a fine-tuned classifier")


def write_tf1(towers, vocab_path, output_dir):
    """A google-research/electra checkpoint (model.ckpt, both towers) with its vocab beside
    it, as the published TF1 Korean ELECTRAs came."""
    checkpoints.write_tf1_checkpoint(towers, output_dir)
    copy_vocab_files(vocab_path, output_dir)
    return output_dir


def export(towers, vocab_path, fmt, output_dir, max_seq_length):
    """Write the towers in `fmt` (one of `FORMATS`); returns the directories written."""
    if fmt == checkpoints.TF1:
        return [write_tf1(towers, vocab_path, output_dir)]
    if fmt == SAVED_MODEL:
        tower = serving_tower(towers)
        length = max_seq_length or min(128, tower.config.max_position_embeddings)
        return [write_saved_model(tower, vocab_path, output_dir, length)]
    if len(towers) == 1:
        return [write_huggingface(towers[0], vocab_path, output_dir, max_seq_length)]
    return [write_huggingface(t, vocab_path, storage.join(output_dir, t.kind), max_seq_length)
            for t in towers]


# --------------------------------------------------------------------------- CLI


def define_flags(fv=None):
    d = dict(flag_values=flags.FLAGS if fv is None else fv)
    flags.DEFINE_string("model_dir", None, "Our model: a pretraining model_dir (its exported "
                        "towers, else its newest checkpoint, e.g. after a SIGTERM or a crash), "
                        "a fine-tuning output_dir or an exported Hugging Face directory.", **d)
    flags.DEFINE_string("init_checkpoint", None, "A published model instead: a transformers "
                        "ELECTRA directory or a google-research/electra TF1 checkpoint.", **d)
    flags.DEFINE_enum("format", FORMATS[0], FORMATS, "Output format: Hugging Face folders, a "
                      "SavedModel taking raw text, or a google-research/electra TF1 checkpoint "
                      "(model.ckpt: the pretraining pair; import it with the discriminator's "
                      "num_attention_heads).", **d)
    flags.DEFINE_string("output_dir", None, "Where to write. In a used folder, files of an "
                        "earlier export are replaced or removed; others stay.", **d)
    flags.DEFINE_string("vocab", None, "Vocab dir or vocab.txt (required for a TF1 checkpoint "
                        "without a vocab.txt beside it; default: the one next to the model, or "
                        "for a pretraining checkpoint the one its config.json names).", **d)
    flags.DEFINE_string("config", None, "JSON config; for TF1: num_attention_heads or "
                        "model_size, which shapes cannot tell.", **d)
    flags.DEFINE_multi_string("set", [], "Config override key=value; repeatable.", **d)
    flags.DEFINE_integer("max_seq_length", None, "SavedModel input length (default: the "
                         "fine-tuning length, else 128).", **d)
    flags.DEFINE_integer("checkpoint_step", None, "With a pretraining --model_dir: export its "
                         "checkpoint of this step (ckpt-<step>, e.g. the last good one before "
                         "a divergence) instead of its exported towers or newest checkpoint; "
                         "--model_dir MODEL_DIR/ckpt-<step> does the same.", **d)


def resolve_heads_config(config_file, overrides):
    """The config for a TF1 import, which must say how many attention heads there are."""
    given = set(config_lib.read_json_file(config_file)) if config_file else set()
    given |= {o.split("=", 1)[0].strip() for o in overrides}
    if not given & {"num_attention_heads", "model_size"}:
        raise checkpoints.CheckpointError(
            "a TF1 checkpoint does not record the number of attention heads: pass "
            "--set num_attention_heads=N (or --set model_size=small|base|large, or --config)")
    return config_lib.load_config(config_lib.PRETRAIN, config_file, overrides)


def run(fv):
    if bool(fv.model_dir) == bool(fv.init_checkpoint):
        raise checkpoints.CheckpointError("give exactly one of --model_dir and --init_checkpoint")
    if not fv.output_dir:
        raise checkpoints.CheckpointError("--output_dir is required")
    if fv.checkpoint_step is not None and not fv.model_dir:
        raise checkpoints.CheckpointError("--checkpoint_step goes with --model_dir")
    storage.check_writable(fv.output_dir)
    storage.remove_stale_temporaries(fv.output_dir, [storage.STAGING_TEMPORARIES])
    if fv.model_dir:
        source = checkpoints.read_model_dir(fv.model_dir, fv.checkpoint_step)
    else:
        location = checkpoints.locate(fv.init_checkpoint, required=True)
        cfg = (resolve_heads_config(fv.config, fv.set) if location.format == checkpoints.TF1
               else None)
        source = checkpoints.read(location, cfg)
    vocab_path = fv.vocab or source.vocab
    if not vocab_path:
        raise checkpoints.CheckpointError("a TF1 checkpoint holds no vocabulary: pass --vocab")
    with storage.staged_output(fv.output_dir, owned=EXPORT_NAMES) as local:
        written = export(source.towers, vocab_path, fv.format, local,
                         fv.max_seq_length or source.max_seq_length)
    return [storage.final_path(path, local, fv.output_dir) for path in written]


def main(argv):
    del argv
    try:
        written = run(flags.FLAGS)
    except (checkpoints.CheckpointError, config_lib.ConfigError, vocab_lib.VocabError,
            storage.OutputError) as err:
        sys.exit(f"error: {err}")
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
