"""Fixtures shared by test modules."""

from __future__ import annotations

import os

import pytest
from gcp_storage_emulator.server import create_server

from jetstream_assets_tests.worlds import free_port


@pytest.fixture(scope="module")
def gcs_emulator():
    """A GCS emulator server on 127.0.0.1 for the module; clients find it through STORAGE_EMULATOR_HOST."""
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
