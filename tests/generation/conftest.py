import pytest

from .test_backends_http import ScriptedServer


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
