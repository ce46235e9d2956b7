"""electra_ko: Korean ELECTRA pretraining, fine-tuning and export for TensorFlow 2."""

__version__ = "0.1.0"
