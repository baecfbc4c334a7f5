import pytest

from cnihost import PodNetwork


@pytest.fixture
def pod(tmp_path):
    """A node namespace and a pod namespace wired by Debian's bridge plugin (tests/support/cnihost.py)."""
    network = PodNetwork(tmp_path)
    try:
        network.add_bridge()
        yield network
    finally:
        network.delete()
