"""Continue pretraining from a checkpoint: `pretrain --init_checkpoint PATH [--init_generator GEN]`.

Every source is read into towers (`checkpoints.Tower`) by `checkpoints.read`, as export
and fine-tuning read theirs; here they become the weights of a fresh `modeling.ElectraPretrainer`:

* the architecture comes from the checkpoint (a config that contradicts it is an error
  naming the key), and the vocab must be the checkpoint's;
* a discriminator tower fills the discriminator and the shared embeddings, a generator
  tower the generator; a masked LM alone (a generator-kind tower and no discriminator)
  fills the discriminator's encoder and the embeddings, and the generator too when it
  has the generator's sizes;
* whatever the checkpoint lacks keeps its fresh initialisation, logged tower by tower.
  Optimizer slots and the step always start fresh (warm-up applies).
"""
import dataclasses
from typing import Optional

import numpy as np

from electra_ko import architecture, checkpoints, storage
from electra_ko import config as config_lib
from electra_ko import vocab as vocab_lib
from electra_ko.checkpoints import DISCRIMINATOR, GENERATOR, CheckpointError

FORMATS = ("a pretraining model_dir of ours (its newest ckpt-<step>, else its exported "
           "discriminator/ and generator/) or one of its ckpt-<step>",
           "a folder holding Hugging Face discriminator/ and generator/ folders",
           "one Hugging Face ELECTRA discriminator or masked-LM folder",
           "a google-research/electra TF1 checkpoint (file prefix, or a directory with a "
           "`checkpoint` file)")


@dataclasses.dataclass
class InitCheckpoint:
    """What a warm start reads: the discriminator tower, or a masked LM standing in for it,
    and the generator tower, if any; the folder of the vocab the checkpoint carries."""
    path: str
    discriminator: Optional[checkpoints.Tower]
    masked_lm: Optional[checkpoints.Tower]
    generator: Optional[checkpoints.Tower]
    vocab_dir: Optional[str]

    @property
    def discriminator_config(self) -> architecture.EncoderConfig:
        return (self.discriminator or self.masked_lm).config


# --------------------------------------------------------------------------- reading


def read(path, generator_path, cfg) -> InitCheckpoint:
    """The towers of `--init_checkpoint` (and `--init_generator`)."""
    towers, vocab_dir = read_towers(path, cfg)
    if generator_path:
        extra, _ = read_towers(generator_path, cfg)
        if [t.kind for t in extra] != [GENERATOR] or extra[0].masked_lm:
            raise CheckpointError(f"--init_generator {generator_path}: holds "
                                  f"{', '.join(t.kind for t in extra)}, not one ELECTRA generator")
        if any(t.kind == GENERATOR for t in towers):
            raise CheckpointError(f"--init_checkpoint {path} holds a generator already: "
                                  "leave out --init_generator")
        towers += extra
    by_kind = {t.kind: t for t in towers}
    unusable = sorted(set(by_kind) - {DISCRIMINATOR, GENERATOR})
    if unusable:
        raise CheckpointError(f"--init_checkpoint {path}: holds a {', '.join(unusable)} model; "
                              "pretraining starts from a discriminator, a generator/discriminator "
                              "pair or a masked LM")
    init = InitCheckpoint(path, by_kind.get(DISCRIMINATOR), None, by_kind.get(GENERATOR), vocab_dir)
    if init.discriminator is None:  # a masked LM: the discriminator-sized model itself
        init.masked_lm, init.generator = init.generator, None
    elif init.generator is not None:
        check_pair(init, generator_path or path)
    return init


def read_towers(path, cfg):
    """(towers, vocab dir or None) of one source, in any of `FORMATS`."""
    location = checkpoints.locate(path)
    if location is None:
        problem = ("does not exist" if not checkpoints.exists(path)
                   else "is in none of the formats accepted")
        raise CheckpointError(f"--init_checkpoint {path} {problem}: give " + "; or ".join(FORMATS))
    if location.format == checkpoints.TF1 and not {"num_attention_heads", "model_size"} & cfg.explicit:
        raise config_lib.ConfigError(
            f"--init_checkpoint {path} is a TF1 checkpoint, which does not record the number "
            "of attention heads: set num_attention_heads (or model_size)")
    source = checkpoints.read(location, cfg)
    return source.towers, _vocab_dir_of(source.vocab)


def _vocab_dir_of(path):
    if not path:
        return None
    directory = vocab_lib.vocab_paths(path)[0]
    return directory if storage.exists(storage.join(directory, vocab_lib.VOCAB_FILE)) else None


def check_pair(init, generator_source):
    """A generator and a discriminator of one pair share their embedding shapes."""
    for name in checkpoints.TABLES:
        disc, gen = (tower.tensors[name].shape for tower in (init.discriminator, init.generator))
        if disc != gen:
            raise CheckpointError(
                f"{generator_source}: the generator's {name} is {list(gen)} but the "
                f"discriminator's ({init.path}) is {list(disc)}: not one generator/discriminator pair")


# --------------------------------------------------------------------------- config


def check_vocab(init, tokenizer, vocab_file):
    """Pretraining goes on with the checkpoint's vocab only (size, and sha256 if it has one)."""
    size = init.discriminator_config.vocab_size
    theirs = vocab_lib.load_tokenizer(init.vocab_dir).vocab_sha256 if init.vocab_dir else None
    if tokenizer.vocab_size != size or theirs not in (None, tokenizer.vocab_sha256):
        recorded = f", sha256 {theirs}" if theirs else ""
        raise config_lib.ConfigError(
            f"vocab_file {vocab_file} ({tokenizer.vocab_size} tokens, sha256 "
            f"{tokenizer.vocab_sha256}) is not the vocab of --init_checkpoint {init.path} "
            f"({size} tokens{recorded}): pretrain with the checkpoint's vocab")


def sized_config(cfg, init):
    """cfg with the checkpoint's architecture; a key given otherwise is an error naming it."""
    disc = init.discriminator_config
    values = {key: getattr(disc, key) for key in architecture.SIZE_KEYS}
    if init.generator is not None:
        gen = init.generator.config
        values.update(generator_hidden_size=gen.hidden_size / disc.hidden_size,
                      generator_layers=gen.num_hidden_layers / disc.num_hidden_layers)
        derived = disc.generator(values["generator_hidden_size"], values["generator_layers"])
        for key in ("num_attention_heads", "intermediate_size"):
            if getattr(derived, key) != getattr(gen, key):
                raise CheckpointError(
                    f"{init.generator.kind} of {init.path}: {key} {getattr(gen, key)} is not "
                    f"google-research/electra's for a generator of hidden size "
                    f"{gen.hidden_size} ({getattr(derived, key)})")
    for key, value in values.items():
        if key in cfg.explicit and not np.isclose(getattr(cfg, key), value):
            raise config_lib.ConfigError(
                f"config key {key!r} is {getattr(cfg, key)!r} but --init_checkpoint "
                f"{init.path} has {value!r}: leave it out (the checkpoint fixes it)")
    return cfg.replace(**values)


# --------------------------------------------------------------------------- weights


def load(model, init):
    """Assign the checkpoint's weights; returns one line per part saying where it came from."""
    generator_source = init.generator or (
        init.masked_lm if init.masked_lm and _same_sizes(init.masked_lm.config,
                                                          model.generator_config) else None)
    lines, assigned = [], {}
    if model.electra_objective:
        if generator_source is not None:
            _copy(model, GENERATOR, generator_source, assigned)
        lines.append(f"generator <- {_describe(generator_source, init)}")
    disc_source = init.discriminator or init.masked_lm
    copied = _copy(model, DISCRIMINATOR if model.electra_objective else GENERATOR, disc_source,
                   assigned)
    head = "" if init.discriminator else " (discriminator head: fresh)"
    lines.insert(0, f"discriminator <- {_describe(disc_source, init)}, {copied} tensors{head}")
    if model.embedding_deltas is not None:
        lines.append("gdes embedding deltas <- " + (
            "discriminator tables - generator tables" if generator_source else "zero"))
    lines.append("optimizer slots and global step: fresh (warm-up applies)")
    return lines


def _describe(tower, init):
    if tower is None:
        return "fresh (the checkpoint has no generator of this size)"
    return f"{'masked LM ' if tower is init.masked_lm else ''}{tower.kind} of {init.path}"


def _same_sizes(a, b):
    return b is not None and all(getattr(a, k) == getattr(b, k) for k in architecture.SIZE_KEYS)


def _copy(model, part, tower, assigned):
    """Copy the tower into the model's `part` by Hugging Face name; returns the count.

    `checkpoints.model_from_tower` checks names (every tensor accounted for) and shapes. A
    table shared with the generator, already copied, is not overwritten: under gdes the
    discriminator keeps its own in the delta, under tied both must agree.
    """
    source = {name: variable.numpy() for name, variable, _ in
              checkpoints.hf_weights(checkpoints.model_from_tower(tower).tf1_weights())}
    deltas = dict(checkpoints.embedding_deltas(model)) if part == DISCRIMINATOR else {}
    count = 0
    for name, variable, _ in checkpoints.hf_weights(model.tf1_weights(part)):
        if name not in source:
            continue  # a masked LM has no discriminator head
        value, count = source[name], count + 1
        if id(variable) not in assigned:
            variable.assign(value)
            assigned[id(variable)] = tower.kind
        elif name in deltas:
            deltas[name].assign(value - variable.numpy())
        elif not np.array_equal(value, variable.numpy()):
            raise CheckpointError(
                f"{name} differs between the generator and the discriminator, which share it "
                f"under embedding_sharing=tied: use embedding_sharing=gdes or untied")
    return count
