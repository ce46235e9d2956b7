"""Export ELECTRA models: `python -m electra_ko.export --format huggingface|saved_model`.

Every source (a pretraining `model_dir`, a fine-tuned model, a Hugging Face directory or a
google-research/electra TF1 checkpoint) is first read into "towers": one per model
(discriminator, generator, classifier), each an `EncoderConfig` plus a dict of NumPy
arrays under Hugging Face `transformers` names in PyTorch layout (see
`electra_ko.checkpoints` for the name tables). The Hugging Face writer copies a tower to
disk; the SavedModel writer loads it into the Keras models below.
"""
import json
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tokenizers import processors  # noqa: E402

from electra_ko import checkpoints, modeling  # noqa: E402
from electra_ko import vocab as vocab_lib  # noqa: E402
from electra_ko.checkpoints import CLASSIFIER, DISCRIMINATOR, GENERATOR, Tower  # noqa: E402

HF_ARCHITECTURES = {DISCRIMINATOR: "ElectraForPreTraining", GENERATOR: "ElectraForMaskedLM",
                    CLASSIFIER: "ElectraForSequenceClassification"}
HF_TOKENIZER_JSON = "tokenizer.json"


# --------------------------------------------------------------------------- Keras models


class DiscriminatorModel(keras.Model):
    """`ElectraForPreTraining`: encoder + replaced-token head -> logits [B, L]."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.encoder = modeling.ElectraEncoder(config, name="electra")
        self.head = modeling.DiscriminatorHead(config, name="discriminator_predictions")
        self.encoder.build()
        self.head.build()

    def call(self, features):
        hidden = self.encoder(features["input_ids"], features["input_mask"],
                              features["segment_ids"])["sequence_output"]
        return self.head(hidden)

    def tf1_weights(self):
        return self.encoder.canonical_weights("electra") + self.head.canonical_weights()


class GeneratorModel(keras.Model):
    """`ElectraForMaskedLM`: encoder + MLM head tied to the word embeddings -> [B, L, vocab]."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.encoder = modeling.ElectraEncoder(config, name="generator")
        self.head = modeling.MaskedLMHead(config, name="generator_predictions")
        self.encoder.build()
        self.head.build()

    def call(self, features):
        hidden = self.encoder(features["input_ids"], features["input_mask"],
                              features["segment_ids"])["sequence_output"]
        return self.head(hidden, self.encoder.embeddings.word_embeddings)

    def tf1_weights(self):
        return self.encoder.canonical_weights("generator") + self.head.canonical_weights()


KERAS_MODELS = {DISCRIMINATOR: DiscriminatorModel, GENERATOR: GeneratorModel}


def hf_weights(model):
    """[(HF name, variable, transposed)] of one of the Keras models above."""
    rows = []
    for tf1_name, variable in model.tf1_weights():
        hf_name, transposed = modeling.tf1_to_huggingface(tf1_name)
        rows.append((hf_name, variable, transposed))
    return rows


def tower_from_model(kind, model, labels=None):
    """Tower of a Keras model: its weights as HF-layout arrays (a copy, never a view)."""
    tensors = {name: _to_torch_layout(variable.numpy(), transposed)
               for name, variable, transposed in hf_weights(model)}
    return Tower(kind, model.encoder.config, tensors, labels)


def model_from_tower(tower):
    """A Keras model holding the tower's weights; every tensor must be used exactly once."""
    model = KERAS_MODELS[tower.kind](tower.config, name=tower.kind)
    rows = hf_weights(model)
    tensors = _without_tied_lm_weight(tower.tensors)
    checkpoints.check_names([name for name, _, _ in rows], tensors, f"{tower.kind} weights")
    for name, variable, transposed in rows:
        value = _to_torch_layout(tensors[name], transposed)
        if value.shape != tuple(variable.shape):
            raise checkpoints.CheckpointError(
                f"{name}: shape {value.shape} does not fit the model's {tuple(variable.shape)}")
        variable.assign(value)
    return model


def _to_torch_layout(value, transposed):
    """Dense kernels are [in, out] in Keras and [out, in] in torch (the same op both ways)."""
    value = np.asarray(value, dtype=np.float32)
    return np.ascontiguousarray(value.T if transposed else value)


def _without_tied_lm_weight(tensors):
    """`generator_lm_head.weight` is the word-embedding matrix; accept it only if it is."""
    tied = tensors.get(checkpoints.TIED_LM_WEIGHT)
    if tied is None:
        return tensors
    if not np.array_equal(tied, tensors.get(checkpoints.WORD_EMBEDDINGS)):
        raise checkpoints.CheckpointError(
            f"{checkpoints.TIED_LM_WEIGHT} differs from {checkpoints.WORD_EMBEDDINGS}: untied "
            f"generator output embeddings are not supported")
    return {k: v for k, v in tensors.items() if k != checkpoints.TIED_LM_WEIGHT}


# --------------------------------------------------------------------------- Hugging Face


def hf_config(tower, special_ids):
    """A `config.json` that transformers' ElectraConfig reads with no custom code."""
    c = tower.config
    config = {
        "architectures": [HF_ARCHITECTURES[tower.kind]],
        "model_type": "electra",
        "vocab_size": c.vocab_size,
        "embedding_size": c.embedding_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "intermediate_size": c.intermediate_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": c.hidden_dropout_prob,
        "attention_probs_dropout_prob": c.attention_probs_dropout_prob,
        "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": c.type_vocab_size,
        "initializer_range": c.initializer_range,
        "layer_norm_eps": c.layer_norm_eps,
        "position_embedding_type": "absolute",
        "pad_token_id": special_ids["pad"],
        "tie_word_embeddings": True,
    }
    if tower.kind == CLASSIFIER:
        config.update(_classifier_labels(tower.labels))
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
    return {"tokenizer_config.json": config, "special_tokens_map.json": special}


def fast_tokenizer_json(tokenizer):
    """The training pipeline itself (incl. the 200-char word limit, which transformers'
    own converter would set to 100) plus BERT's [CLS]/[SEP] template."""
    ids, tokens = tokenizer.special_ids, tokenizer.tokens
    pipeline = vocab_lib.wordpiece_pipeline({t: i for i, t in enumerate(tokens)},
                                            tokenizer.do_lower_case)
    cls, sep = tokens[ids["cls"]], tokens[ids["sep"]]
    pipeline.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, ids["cls"]), (sep, ids["sep"])])
    return pipeline.to_str()


def write_huggingface(tower, vocab_path, output_dir, max_seq_length=None):
    """A directory that `transformers` loads with `<Architecture>.from_pretrained(dir)`."""
    from safetensors.numpy import save_file

    tokenizer = vocab_lib.load_tokenizer(vocab_path)
    if tokenizer.vocab_size != tower.config.vocab_size:
        raise ValueError(f"{vocab_path}: {tokenizer.vocab_size} tokens, but the model has "
                         f"vocab_size {tower.config.vocab_size}")
    os.makedirs(output_dir, exist_ok=True)
    save_file(tower.tensors, os.path.join(output_dir, checkpoints.HF_SAFETENSORS),
              metadata={"format": "pt"})
    files = {checkpoints.HF_CONFIG: hf_config(tower, tokenizer.special_ids)}
    files.update(tokenizer_files(tokenizer, max_seq_length or tower.config.max_position_embeddings))
    for name, content in files.items():
        _write_json(os.path.join(output_dir, name), content)
    with open(os.path.join(output_dir, vocab_lib.VOCAB_FILE), "w", encoding="utf-8") as f:
        f.write("".join(token + "\n" for token in tokenizer.tokens))
    if tokenizer.kind == vocab_lib.WORDPIECE:
        with open(os.path.join(output_dir, HF_TOKENIZER_JSON), "w", encoding="utf-8") as f:
            f.write(fast_tokenizer_json(tokenizer))
    return output_dir


def _write_json(path, content):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, ensure_ascii=False, indent=2)
        f.write("\n")
