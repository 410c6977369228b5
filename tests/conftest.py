import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer


@pytest.fixture
def server():
    with MockServer(files=1234, seed=7) as srv:
        yield srv


@pytest.fixture
def client(server):
    return st.Client(server.token, server.url, max_retries=2)
