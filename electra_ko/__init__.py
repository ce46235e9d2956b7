"""electra_ko: Korean ELECTRA pretraining, fine-tuning and export for TensorFlow 2."""
from electra_ko import environment as _environment

# Before any module of ours imports TensorFlow: its import-time settings, a quiet start-up.
_environment.configure_tensorflow()
_environment.quiet_tensorflow_startup()

__version__ = "0.1.0"
