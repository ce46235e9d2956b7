"""Test-wide setup: quiet TensorFlow, two logical CPU devices for MirroredStrategy tests.
(Importing electra_ko first gives TensorFlow the CLIs' settings: `electra_ko.environment`.)"""
import os
import socket
import sys

import pytest

import electra_ko  # noqa: F401  (before any test module imports TensorFlow)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_finish(session):
    """Split the CPU into two logical devices once collection has imported TensorFlow.

    Done here (before any test runs TF ops, after which it is impossible) and only when
    some collected module imported TensorFlow, so TF-free test runs stay fast.
    """
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:  # a test module ran TF ops at import time
        pass


@pytest.fixture(scope="session")
def two_cpu_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by every test.

    Each strategy numbers its collective ops from the same start, so a second strategy
    over the same devices in one process collides with the first one's all-reduces
    ("Shape mismatch in the collective instance 100"); a real run has only one.
    """
    import tensorflow as tf

    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, (
        f"{len(devices)} logical CPU: a test module ran TensorFlow ops at import time, before "
        "conftest.pytest_collection_finish could split the CPU in two")
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_emulator():
    """An in-memory gcp-storage-emulator on a free localhost port; yields a bucket name.

    ``STORAGE_EMULATOR_HOST`` points google-cloud-storage (and processes forked from
    the tests) at it for the whole session.
    """
    from gcp_storage_emulator.server import create_server

    bucket = "electra-ko-test"
    port = _free_port()
    server = create_server("localhost", port, in_memory=True, default_bucket=bucket)
    server.start()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://localhost:{port}"
    try:
        yield bucket
    finally:
        server.stop()
        if previous is None:
            del os.environ["STORAGE_EMULATOR_HOST"]
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
