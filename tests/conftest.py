"""Shared fixtures, built once per test session."""

import pytest

from benlab.lab_server import LocalLab


@pytest.fixture(scope="session")
def lab_url():
    """A real lab server in a child process on a free loopback port."""
    with LocalLab() as lab:
        yield lab.url
