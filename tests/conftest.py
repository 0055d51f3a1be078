"""Shared fixtures, built once per test session."""

import contextlib
import threading
import time

import pytest
import uvicorn

from benlab.lab_server import LocalLab, free_port


@pytest.fixture(scope="session")
def lab_url():
    """A real lab server in a child process on a free loopback port."""
    with LocalLab() as lab:
        yield lab.url


@contextlib.contextmanager
def serve(app):
    """Serve an ASGI app with uvicorn in a background thread on a free loopback port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
