"""`make demo PROVIDER=<network>` tells the TikTok demo's story for any shipped network, secrets unprinted."""

import re

import pytest

from local import demo
from local.sim_provider import SIMULATED

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("network", sorted(set(SIMULATED) - {"tiktok"}))
def test_the_demo_connects_claims_and_keeps_a_network_alive(network, capsys):
    assert demo.run_network(network, days=120) == 0
    out = capsys.readouterr().out
    assert "callback -> status=pending_confirmation" in out and "result=created" in out
    assert "Connection Created: status=active" in out and "Done: one" in out
    assert re.search(r"\d+ refreshes, all answered \[200\]; status active", out)
    assert not re.search(r"\b(at|rt|code)-[A-Za-z0-9_-]{8,}", out)  # no token or code is ever printed
