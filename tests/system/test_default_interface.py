"""With no --interface and no --tap, in real namespaces: a container whose one interface is
not eth0 hands that one over (and -v says so), a restart finds it again through the record on
the tap, a tap0 that exists already moves the tap on to tap1, several interfaces without eth0
are refused in one line that leaves the network as it was; and --dry-run's steps write an
address as inspect does."""
import json

from snapshots import snapshot, wiring_state
from clirun import report, ukrun


def rename(container, new):
    """The container's eth0 renamed ``new`` (as a CNI plugin or slirp4netns names it)."""
    container.ip("link", "set", "eth0", "down")
    container.ip("link", "set", "eth0", "name", new)
    container.ip("link", "set", new, "up")
    container.ip("route", "replace", "default", "via", container.gateway)


def test_the_only_interface_is_handed_over_and_a_restart_finds_it(container, ukrun_exe, standin,
                                                                 kernel_file):
    rename(container, "net1")
    argv = ["spt", "-v", "--tender", standin, kernel_file]
    first = ukrun(container, ukrun_exe, *argv)
    got = report(first)
    assert "no eth0: handing over net1, the container's only interface besides lo" in first.stderr
    assert "--net:service=tap0" in got["argv"] and "--ipv4=172.30.0.2/16" in got["argv"]
    wired = wiring_state(container)
    again = ukrun(container, ukrun_exe, *argv)
    assert report(again)["argv"] == got["argv"]
    assert "create" not in again.stderr and wiring_state(container) == wired


def test_a_taken_tap0_moves_the_default_tap_to_tap1(container, ukrun_exe, standin, kernel_file):
    # Rootless Podman's slirp4netns: the container's one interface is a tun named tap0.
    rename(container, "tap0")
    plan = report(ukrun(container, ukrun_exe, "spt", "--dry-run", "--tender", standin,
                        kernel_file))
    assert [n["interface"] for n in plan["networks"]] == ["tap0"]
    assert plan["networks"][0]["tap"] == "tap1"
    assert "--net:service=tap1" in plan["argv"]
    assert any("no eth0: handing over tap0" in n for n in plan["notes"])
    explicit = report(ukrun(container, ukrun_exe, "spt", "--dry-run", "--interface", "tap0",
                            "--tender", standin, kernel_file))
    assert explicit["networks"][0]["tap"] == "tap1"  # no "--interface and --tap collide"


def test_several_interfaces_without_eth0_are_refused(container, ukrun_exe, standin):
    rename(container, "net1")
    container.ip("link", "add", "net2", "type", "bridge")  # no dummy module here
    before = snapshot(container)
    proc = ukrun(container, ukrun_exe, "unix", standin)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == ("ukrun: error: no eth0, and the container has 2 interfaces: net1, "
                           "net2 (pass --interface NAME (repeatable for several) to say which)\n")
    assert snapshot(container) == before
    chosen = report(ukrun(container, ukrun_exe, "unix", "--dry-run", "--interface", "net1",
                          standin))
    assert chosen["networks"][0]["interface"] == "net1"


def test_dry_run_writes_the_address_as_inspect_does(container, ukrun_exe, standin):
    plan = report(ukrun(container, ukrun_exe, "unix", "--dry-run", standin))
    inspected = json.loads(ukrun(container, ukrun_exe, "inspect").stdout)
    deleted = [s["args"]["address"] for s in plan["steps"] if s["op"] == "delete_address"]
    assert deleted and all(set(a) == set(inspected["addresses"][0]) for a in deleted)
    assert "172.30.0.2/16" in [a["address"] for a in deleted]
