"""Test-wide setup: oneDNN on, quiet TensorFlow, two logical CPU devices for MirroredStrategy tests."""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
