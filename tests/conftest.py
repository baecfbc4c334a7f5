import os
import shutil
import sys
import tempfile

import pytest

# The helpers (nsutil, guests, engine, ...) are plain modules in tests/support.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))

from clirun import STANDIN  # noqa: E402
from nsutil import DockerHost, Netns, unique  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: runs a real guest end to end")
    config.addinivalue_line("markers", "engine: runs containers under a real Docker engine "
                            "(tests/support/engine.py)")


@pytest.fixture
def netns():
    """An empty network namespace (lo up), removed afterwards."""
    ns = Netns(unique("ukt"))
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def docker_host():
    """A Docker-host namespace with docker0; call ``.container()`` for docker-like containers."""
    host = DockerHost(unique("ukh"))
    try:
        yield host
    finally:
        host.delete()


@pytest.fixture
def container(docker_host):
    """One docker-like container: eth0 172.30.0.2/16 via 172.30.0.1, MAC 02:42:ac:1e:00:02."""
    return docker_host.container()


@pytest.fixture
def programs(tmp_path):
    """(an executable stand-in, a unikernel file): plan() checks both, nothing runs them."""
    exe = tmp_path / "standin"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    kernel = tmp_path / "unikernel.bin"
    kernel.write_bytes(b"\x7fELF")
    return str(exe), str(kernel)


@pytest.fixture
def shared_dir():
    """A directory any uid can read: pytest's tmp_path lives under a 0700 directory."""
    path = tempfile.mkdtemp(prefix="ukrun-test-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def uguest(tmp_path):
    """The userspace test guest (tests/support/guests/uguest.py), executable, in tmp_path."""
    from guests import install_uguest

    return install_uguest(tmp_path)


@pytest.fixture
def unikernel(tmp_path):
    """A stand-in for the Solo5 unikernel file a tender loads."""
    from guests import install_dummy_unikernel

    return install_dummy_unikernel(tmp_path)


@pytest.fixture(scope="session")
def ukrun_exe():
    exe = os.path.join(os.path.dirname(sys.executable), "ukrun")
    if not os.path.exists(exe):
        exe = shutil.which("ukrun")
    assert exe, "the ukrun console script is not installed (make build)"
    return exe


@pytest.fixture
def standin(tmp_path):
    """clirun.STANDIN, executable, in tmp_path: reports its argv, capabilities and fds."""
    path = tmp_path / "standin"
    path.write_text(STANDIN.format(python=sys.executable))
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def kernel_file(tmp_path):
    """A unikernel for the targets that hand it to a tender or QEMU (never executed here)."""
    path = tmp_path / "unikernel.bin"
    path.write_bytes(b"\x7fELF not really")
    return str(path)
