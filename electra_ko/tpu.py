"""Cloud TPU slices and whether a pretraining config fits on one (no TensorFlow).

`python -m electra_ko.pretrain --dry_run --set tpu_type=v3-8` prints `estimate_memory`'s
per-core figure and warns before a run that cannot fit. The estimate is a lower bound
of what XLA keeps live in one training step: weights, gradients and Adam's two slots in
float32 on every core, plus the activations saved for the backward pass of one core's
share of the batch (bfloat16 on TPU), with the attention probabilities -- heads x L x L
per example and layer -- usually the largest part.
"""
import dataclasses
import re

GIB = 1 << 30

# TPU generation -> (TensorFlow devices per unit of the slice's size, HBM per device in
# GiB). A slice's size counts TensorCores for v2/v3/v4/v5p (v4 and v5p fuse a chip's two
# cores into one device) and chips for v5e/v6e; every host has 8 units.
GENERATIONS = {
    "v2": (1.0, 8), "v3": (1.0, 16), "v4": (0.5, 32), "v5p": (0.5, 95),
    "v5litepod": (1.0, 16), "v5e": (1.0, 16), "v6e": (1.0, 32),
}
UNITS_PER_HOST = 8


class SliceError(ValueError):
    """An accelerator type that is not a known TPU slice."""


@dataclasses.dataclass(frozen=True)
class Slice:
    """A TPU slice such as v3-8 or v4-32."""
    name: str
    generation: str
    size: int

    @classmethod
    def parse(cls, name: str) -> "Slice":
        match = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", name.strip().lower())
        if not match or match.group(1) not in GENERATIONS:
            raise SliceError(f"unknown TPU type {name!r}: expected e.g. v3-8, v4-32, v5litepod-16, "
                             f"v6e-8 (generations: {', '.join(GENERATIONS)})")
        return cls(name, match.group(1), int(match.group(2)))

    @property
    def devices(self) -> int:
        """TensorFlow TPU devices (= replicas) in the slice."""
        return max(1, int(self.size * GENERATIONS[self.generation][0]))

    @property
    def hbm_gib(self) -> float:
        return float(GENERATIONS[self.generation][1])

    @property
    def hosts(self) -> int:
        """TPU VMs: more than one makes it a pod slice (multi-host)."""
        return max(1, self.size // UNITS_PER_HOST)


def _tower_bytes(batch, length, hidden, heads, intermediate, layers, bytes_per_value):
    """Activations one Transformer tower saves for its backward pass on one core."""
    attention = batch * heads * length * length  # probabilities, [B, H, L, L] per layer
    hidden_states = batch * length * (6 * hidden + 2 * intermediate)  # q, k, v, context, ...
    return layers * (attention + hidden_states) * bytes_per_value


def estimate_memory(cfg, num_params: int, tpu_slice: Slice) -> dict:
    """Per-core memory of one pretraining step of `cfg` on `tpu_slice`, in GiB."""
    if cfg.train_batch_size % tpu_slice.devices:
        raise SliceError(f"train_batch_size {cfg.train_batch_size} is not a multiple of the "
                         f"{tpu_slice.devices} TPU devices of {tpu_slice.name}")
    batch = cfg.train_batch_size // tpu_slice.devices
    bytes_per_value = 4 if cfg.mixed_precision == "float32" else 2
    length = cfg.max_seq_length
    activations = _tower_bytes(batch, length, cfg.hidden_size, cfg.num_attention_heads,
                               cfg.intermediate_size, cfg.num_hidden_layers, bytes_per_value)
    if cfg.electra_objective:
        generator = cfg.generator_sizes()
        activations += _tower_bytes(batch, length, generator["hidden_size"],
                                    generator["num_attention_heads"],
                                    generator["intermediate_size"],
                                    generator["num_hidden_layers"], bytes_per_value)
    weights = 16 * num_params  # float32 weights, gradients, Adam m and v
    total = (weights + activations) / GIB
    return {"tpu_type": tpu_slice.name, "devices": tpu_slice.devices, "hosts": tpu_slice.hosts,
            "batch_per_device": batch, "weights_gib": round(weights / GIB, 2),
            "activations_gib": round(activations / GIB, 2), "total_gib": round(total, 2),
            "hbm_gib": tpu_slice.hbm_gib, "fits": total <= 0.9 * tpu_slice.hbm_gib}


def memory_warning(estimate: dict) -> str:
    """One line for a run that cannot fit ("" when it fits)."""
    if estimate["fits"]:
        return ""
    return (f"WARNING: about {estimate['total_gib']:.1f} GiB per TPU device "
            f"({estimate['activations_gib']:.1f} GiB activations for a per-device batch of "
            f"{estimate['batch_per_device']}) will not fit the {estimate['hbm_gib']:.0f} GiB of a "
            f"{estimate['tpu_type']} device: use a larger slice, a smaller train_batch_size or "
            "max_seq_length")
