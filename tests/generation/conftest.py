import pytest

from .test_backends_http import ScriptedServer


# The engine's modules as fixtures: importing torch and transformers takes seconds, and every test process collects
# the whole suite; only the process that runs an engine test pays for them.
@pytest.fixture(scope="session")
def torch():
    import torch

    return torch


@pytest.fixture(scope="session")
def transformers():
    import transformers

    return transformers


@pytest.fixture(scope="session")
def decoding():
    from generation.backends import decoding

    return decoding


@pytest.fixture
def serve():
    """``serve(*answers)`` starts a local OpenAI-compatible test server answering in that order; all stop after."""
    servers = []

    def start(*script):
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
