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


@pytest.fixture(scope="session")
def rootful_podman():
    """Debian's podman as root, in a namespace and directories of its own
    (tests/support/podman.py)."""
    import tempfile

    from podman import Podman, missing_tools

    why = missing_tools()
    if why:
        pytest.skip(why)
    podman = Podman.rootful(tempfile.mkdtemp(prefix="ukpd-", dir="/tmp"))
    try:
        yield podman
    finally:
        podman.stop()


@pytest.fixture(scope="session")
def podman_spt_archive(rootful_podman):
    """The Docker engine tests' spt image (engine.Images) as podman saved it, in .cache/podman/
    (built by the rootful podman when this tree has not built it before)."""
    from podman import image_archive

    return image_archive(rootful_podman, "spt")
