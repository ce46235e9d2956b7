"""What an ELECTRA encoder is, without TensorFlow: its config, the one list of architecture
keys, the size presets and the generator-size rule.

Every other list derives from here: the config keys that follow `model_size`, what a
fine-tuning `--model_config` may set, what a checkpoint fixes and what resuming may not
change, the keys of an exported `config.json`, the sizes read from a checkpoint's shapes.
The keys keep the names google-research/electra's config, transformers' `ElectraConfig`
and our config files share, in `ElectraConfig`'s order (an export's `config.json` bytes
depend on it).

No TensorFlow, Keras or project import here: the config, the checkpoint readers and tools
that only need sizes import this module cheaply.
"""
import dataclasses
from typing import Mapping, Optional

HIDDEN_ACTS = ("gelu",)  # exact (erf) GELU, as google-research/electra and transformers' "gelu"
POSITION_EMBEDDING_INITS = ("truncated_normal", "sinusoidal")

# What each key is to a model (the `role` of its field below).
SHAPE = "shape"      # a size the weights' shapes tell
HEADS = "heads"      # a size the weights fix but their shapes do not tell (attention heads)
COMPUTE = "compute"  # how the layers compute (activation, LayerNorm epsilon)
DROPOUT = "dropout"  # a training choice, not fixed by the weights
INIT = "init"        # how a random model starts; a checkpoint's weights replace it


def _key(role, default=dataclasses.MISSING, huggingface=True):
    """A field of EncoderConfig: its role, and whether transformers' ElectraConfig has it."""
    return dataclasses.field(default=default, metadata={"role": role, "huggingface": huggingface})


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Sizes of one encoder; independent of the project's Config so checkpoints and
    exporters can build a model from a plain dict (`EncoderConfig(**d)`).

    Its fields are the architecture keys: the one list, in the order of an exported
    `config.json`."""

    vocab_size: int = _key(SHAPE)
    embedding_size: int = _key(SHAPE)
    hidden_size: int = _key(SHAPE)
    num_hidden_layers: int = _key(SHAPE)
    num_attention_heads: int = _key(HEADS)
    intermediate_size: int = _key(SHAPE)
    hidden_act: str = _key(COMPUTE, "gelu")
    hidden_dropout_prob: float = _key(DROPOUT, 0.1)
    attention_probs_dropout_prob: float = _key(DROPOUT, 0.1)
    max_position_embeddings: int = _key(SHAPE, 512)
    type_vocab_size: int = _key(SHAPE, 2)
    initializer_range: float = _key(INIT, 0.02)
    layer_norm_eps: float = _key(COMPUTE, 1e-12)
    position_embedding_init: str = _key(INIT, "truncated_normal", huggingface=False)

    def __post_init__(self):
        for key in SIZE_KEYS:
            if not isinstance(getattr(self, key), int) or getattr(self, key) <= 0:
                raise ValueError(f"EncoderConfig.{key} must be a positive int, "
                                 f"got {getattr(self, key)!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")
        for key, choices in (("hidden_act", HIDDEN_ACTS),
                             ("position_embedding_init", POSITION_EMBEDDING_INITS)):
            if getattr(self, key) not in choices:
                raise ValueError(f"EncoderConfig.{key} must be one of {choices}, "
                                 f"got {getattr(self, key)!r}")

    @classmethod
    def from_config(cls, cfg) -> "EncoderConfig":
        """The discriminator (or fine-tuned model) described by a project `Config`."""
        if cfg.vocab_size is None:
            raise ValueError("config key 'vocab_size' is not set: set it or give vocab_file")
        values = {key: getattr(cfg, key) for key in ARCHITECTURE_KEYS}
        return cls(**dict(values, embedding_size=cfg.embedding_size or cfg.hidden_size))

    @classmethod
    def generator_from_config(cls, cfg) -> "EncoderConfig":
        return cls.from_config(cfg).generator(cfg.generator_hidden_size, cfg.generator_layers)

    def generator(self, hidden_fraction: float, layers_fraction: float = 1.0) -> "EncoderConfig":
        """The generator of this discriminator (`generator_sizes`): it keeps the embedding
        size, so it projects when that differs from its own hidden size."""
        return dataclasses.replace(self, **generator_sizes(
            self.hidden_size, self.num_hidden_layers, hidden_fraction, layers_fraction))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- the keys

_FIELDS = dataclasses.fields(EncoderConfig)


def keys_with_role(*roles) -> tuple:
    """The architecture keys of these roles, in the one order."""
    return tuple(f.name for f in _FIELDS if f.metadata["role"] in roles)


ARCHITECTURE_KEYS = tuple(f.name for f in _FIELDS)
# The keys transformers' ElectraConfig has (and google-research/electra's BERT config):
# an export's config.json and `model_hparam_overrides` hold these.
HF_CONFIG_KEYS = tuple(f.name for f in _FIELDS if f.metadata["huggingface"])
SHAPE_KEYS = keys_with_role(SHAPE)  # what `checkpoints.infer_sizes` reads off the tensors
SIZE_KEYS = keys_with_role(SHAPE, HEADS)  # what a checkpoint's weights fix
DROPOUT_KEYS = keys_with_role(DROPOUT)
INIT_KEYS = keys_with_role(INIT)
DEFAULTS = {f.name: f.default for f in _FIELDS if f.default is not dataclasses.MISSING}

# ----------------------------------------------------------------------------- sizes

# The architecture of each model_size: the paper's small/base/large; tiny and debug are
# ours, for CPU runs and tests. `generator_hidden_size` is the generator's width as a
# fraction of the discriminator's (see `generator_sizes`).
SIZE_PRESETS = {
    "debug": dict(embedding_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, generator_hidden_size=0.5),
    "tiny": dict(embedding_size=128, hidden_size=128, num_hidden_layers=4, num_attention_heads=2,
                 intermediate_size=512, generator_hidden_size=0.5),
    "small": dict(embedding_size=128, hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
                  intermediate_size=1024, generator_hidden_size=0.25),
    "base": dict(embedding_size=768, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, generator_hidden_size=1.0 / 3.0),
    "large": dict(embedding_size=1024, hidden_size=1024, num_hidden_layers=24,
                  num_attention_heads=16, intermediate_size=4096, generator_hidden_size=0.25),
}
MODEL_SIZES = tuple(SIZE_PRESETS)
# The architecture keys a preset sets: they tell the sizes apart.
PRESET_KEYS = tuple(key for key in ARCHITECTURE_KEYS if key in SIZE_PRESETS[MODEL_SIZES[0]])


def size_of(sizes: Mapping) -> Optional[str]:
    """The model_size whose preset has exactly these encoder sizes, else None."""
    for name, preset in SIZE_PRESETS.items():
        if all(sizes.get(key) == preset[key] for key in PRESET_KEYS):
            return name
    return None


def generator_heads(hidden_size: int) -> int:
    """A generator's attention heads: one per 64 hidden units (google-research/electra)."""
    return max(1, hidden_size // 64)


def generator_sizes(hidden_size: int, num_hidden_layers: int, hidden_fraction: float,
                    layers_fraction: float = 1.0) -> dict:
    """The generator's sizes for a discriminator of these sizes, derived exactly as
    google-research/electra's `get_generator_config` (published checkpoints depend on the
    rounding: 768 * 0.333 gives 256, not int()'s 255)."""
    hidden = int(round(hidden_size * hidden_fraction))
    return dict(hidden_size=hidden, num_hidden_layers=int(round(num_hidden_layers * layers_fraction)),
                num_attention_heads=generator_heads(hidden), intermediate_size=4 * hidden)
