"""The README's library example works: its python blocks run for real in a test container."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.findall(r"^```python\n(.*?)^```$", f.read(), re.S | re.M)


def test_readme_python_blocks_run_in_a_container(container):
    plan_block, run_block = python_blocks()
    before = container.snapshot()
    out = container.exec(sys.executable, "-c", plan_block, cwd=ROOT).stdout
    assert "172.30.0.2/16 via 172.30.0.1 MAC %s" % container.mac in out
    assert "/bin/echo --interface=tap0 hello --ipv4=172.30.0.2/16 --ipv4-gateway=172.30.0.1" in out
    assert "would: create persistent tap tap0" in out
    assert container.snapshot() == before  # plan changes nothing

    out = container.exec(sys.executable, "-c", run_block, cwd=ROOT).stdout
    # The process became /bin/echo, with the container's address as MirageOS arguments.
    assert out == "--interface=tap0 hello --ipv4=172.30.0.2/16 --ipv4-gateway=172.30.0.1\n"
    assert "tap0" in container.ip("link", "show").stdout
