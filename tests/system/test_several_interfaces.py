"""Several interfaces in one run: a docker-like container with
eth0 and a Multus pod's second interface net1. Each gets its own tap, wiring, record and guest
device; one undo log gives both back, whatever fails; a restart takes both records over; the
tenders' command lines name each device; frames cross both wirings.
"""
import errno
import json
import sys

import pytest

from nsutil import in_netns
from snapshots import snapshot, wiring_state
from clirun import RAW_CLI, report, ukrun
from inprocess import fail_at, spt
from tapguest import Guest, ping
from ukrun.errors import NetworkError, NotExecutableError, UsageError
from ukrun.report import inspect
from ukrun.runner import apply
from ukrun.planning import plan
from ukrun.kernel.tap import open_tap

NET1_IP, NET1_HOST, NET1_MAC = "10.0.0.2", "10.0.0.1", "02:00:0a:00:00:02"
BOTH = ("eth0", "net1")


@pytest.fixture
def multus(docker_host, container):
    """The container with a second interface, as Multus adds one: veth net1 with 10.0.0.2/24,
    its own MAC and a route through 10.0.0.1; its peer is on bridge multus0 (10.0.0.1/24) in
    the host's namespace. Both go with the namespaces."""
    docker_host.ip("link", "add", "multus0", "type", "bridge")
    docker_host.ip("addr", "add", "%s/24" % NET1_HOST, "dev", "multus0")
    docker_host.ip("link", "set", "multus0", "up")
    docker_host.ip("link", "add", "mveth1", "type", "veth", "peer", "name", "net1", "netns",
                   container.name)
    docker_host.ip("link", "set", "mveth1", "master", "multus0", "up")
    container.ip("link", "set", "net1", "address", NET1_MAC)
    container.ip("addr", "add", "%s/24" % NET1_IP, "dev", "net1")
    container.ip("link", "set", "net1", "up")
    container.ip("route", "add", "10.0.1.0/24", "via", NET1_HOST, "dev", "net1")
    return container


def net_words(argv):
    return [word for word in argv if word.startswith("--net")]


def by_prefix(snap):
    """``snap`` with its routes ordered by table, prefix, link and metric. The kernel lists
    routes to one prefix on several links in the order they were added (IPv6: net1's fe80::/64
    after eth0's), and a run that gives eth0 back while net1 is untouched re-adds eth0's last:
    no undo can restore that order without deleting net1's route, which is not ukrun's to
    touch. Nothing else is reordered: the rest of the order is the kernel's, by prefix."""
    def key(route):
        return (route.get("table", ""), route.get("type", ""), route["dst"],
                route.get("dev", ""), route.get("metric", 0))
    return dict(snap, routes=sorted(snap["routes"], key=key))


# --- the plan ---------------------------------------------------------------------------------

def test_a_plan_hands_over_each_interface_and_changes_nothing(multus, programs):
    before = snapshot(multus)
    with in_netns(multus.name):
        p = plan(spt(programs, interface=BOTH, mac=("inherit", "random")))
    assert snapshot(multus) == before
    random_mac = p.handovers[1].guest_mac
    assert random_mac not in (multus.mac, NET1_MAC)
    assert net_words(p.argv) == ["--net:service=tap0", "--net-mac:service=" + multus.mac,
                                 "--net:service1=tap1", "--net-mac:service1=" + random_mac]
    # The named formats describe the first interface; the plan says so.
    assert p.argv[-2:] == ["--ipv4=172.30.0.2/16", "--ipv4-gateway=172.30.0.1"]
    assert any("describes only the first interface (eth0)" in n for n in p.notes)
    data = json.loads(json.dumps(p.to_json()))
    assert data["network"]["interface"] == "eth0" and data["guest_mac"] == multus.mac
    assert [(n["interface"], n["tap"], n["ipv4"], n["device"], n["guest_mac"])
            for n in data["networks"]] == [
        ("eth0", "tap0", "172.30.0.2/16", "service", multus.mac),
        ("net1", "tap1", "10.0.0.2/24", "service1", random_mac)]
    assert data["networks"][1]["routes"] and data["networks"][1]["gateway4"] is None
    texts = [s["do"] for s in data["steps"]]
    for wanted in ("remove 172.30.0.2/16 from eth0", "remove 10.0.0.2/24 from net1",
                   "redirect every frame arriving on net1 to tap1"):
        assert wanted in texts


def test_the_template_addresses_each_interface(multus, programs):
    with in_netns(multus.name):
        p = plan(spt(programs, interface=BOTH, ip_args="template",
                     ip_template="--ipv4={ipv4} --net1={1.ipv4} --dev1={1.device} --n2={2.ipv4}"))
    assert p.argv[-3:] == ["--ipv4=172.30.0.2/16", "--net1=10.0.0.2/24", "--dev1=service1"]


def test_unikraft_gets_one_netdev_ip_per_interface(multus, programs):
    with in_netns(multus.name):
        p = plan(spt(programs, interface=BOTH, ip_args="unikraft"))
    first, second = p.argv[p.argv.index("--") + 2:]
    # (The first entry carries DNS too, from whatever resolv.conf this machine has.)
    assert first.startswith("netdev.ip=172.30.0.2/16:172.30.0.1")
    assert second == "netdev.ip=10.0.0.2/24"


# --- apply and undo ---------------------------------------------------------------------------

@pytest.mark.parametrize("wiring", ["tc", "bridge"])
@pytest.mark.parametrize("tap_fd", [False, True])
def test_apply_then_undo_restores_both(wiring, tap_fd, multus, programs):
    before = snapshot(multus)
    with in_netns(multus.name):
        applied = apply(plan(spt(programs, interface=BOTH, wiring=wiring, tap_fd=tap_fd)))
        assert sorted(applied.tap_fds) == ([3, 4] if tap_fd else [])
        wired = snapshot(multus)
        applied.undo()
    names = {link["ifname"] for link in wired["links"]}
    assert {"tap0", "tap1"} <= names
    assert wiring == "tc" or {"br0", "br1"} <= names
    assert not [a for link in wired["addrs"] if link["ifname"] in BOTH
                for a in link.get("addr_info", [])]
    assert snapshot(multus) == before


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_a_failure_at_any_step_gives_both_back(wiring, multus, programs, monkeypatch):
    before = snapshot(multus)
    options = spt(programs, interface=BOTH, wiring=wiring)
    with in_netns(multus.name):
        count = len(plan(options).steps)
    for index in range(count):
        with in_netns(multus.name):
            p = plan(options)
            fail_at(monkeypatch, p.steps[index])
            with pytest.raises(NetworkError) as failed:
                apply(p)
        monkeypatch.undo()
        assert failed.value.message == "%s: injected failure" % p.steps[index].text
        assert by_prefix(snapshot(multus)) == by_prefix(before), (
            "after a failure at step %d (%s)" % (index, p.steps[index].text))
    # Both interfaces' steps were among those failed at.
    assert any("net1" in s.text for s in p.steps) and any("eth0" in s.text for s in p.steps)


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_a_restart_takes_over_both_records(wiring, multus, programs):
    options = spt(programs, interface=BOTH, wiring=wiring, mac=("random", "random"))
    with in_netns(multus.name):
        first = plan(options)
        apply(first).close()
        wired = wiring_state(multus)
        aliases = {tap: multus.ip_json("-d", "link", "show", tap)[0]["ifalias"]
                   for tap in ("tap0", "tap1")}
        second = plan(options)
        assert [h.network.source for h in second.handovers] == ["recorded", "recorded"]
        assert [s.op for s in second.steps] == ["disable_offloads", "disable_offloads"]
        assert second.argv == first.argv  # same addresses and (random) MACs
        assert sum("takes it over" in n for n in second.notes) == 2
        apply(second).close()
    assert wiring_state(multus) == wired
    assert aliases["tap0"].startswith("ukrun:1 i=eth0 ") and " 4=172.30.0.2/16 " in aliases["tap0"]
    assert aliases["tap1"].startswith("ukrun:1 i=net1 ") and " 4=10.0.0.2/24 " in aliases["tap1"]


def test_a_guest_on_either_tap_stops_a_second_run(multus, programs):
    with in_netns(multus.name):
        apply(plan(spt(programs, interface=BOTH))).close()
        wired = wiring_state(multus)
        guest = open_tap("tap1")  # the second device of a running guest
        try:
            with pytest.raises(NetworkError) as failed:
                plan(spt(programs, interface=BOTH))
        finally:
            guest.close()
    assert failed.value.message == "net1 is already handed to a running guest (tap1 has a reader)"
    assert wiring_state(multus) == wired


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_frames_cross_both_wirings(wiring, docker_host, multus, programs):
    with in_netns(multus.name):
        apply(plan(spt(programs, interface=BOTH, wiring=wiring))).close()
    guests = [Guest(multus.name, "tap0", multus.mac),
              Guest(multus.name, "tap1", NET1_MAC, ip=NET1_IP)]
    try:
        assert ping(docker_host)
        assert ping(docker_host, NET1_IP)
    finally:
        for guest in guests:
            guest.close()


@pytest.mark.parametrize("mode", ["direct", "forked"])
def test_an_exec_that_fails_gives_both_back(mode, multus, programs, monkeypatch):
    from ukrun.kernel import caps, signals
    from ukrun import runner

    def refuse(*args):  # this is pytest's own process: it must never be replaced
        raise OSError(errno.ENOEXEC, "Exec format error")

    monkeypatch.setattr(caps, "drop", lambda *a, **k: None)  # pytest keeps its capabilities
    monkeypatch.setattr(signals, "reset_signals", lambda: None)
    monkeypatch.setattr(runner.os, "execve", refuse)
    before = snapshot(multus)
    with in_netns(multus.name):
        # By name: fds 3 and 4 are pytest's own here (a run reserves them for the taps).
        p = plan(spt(programs, interface=BOTH))
        p.exec_mode = mode
        with pytest.raises(NotExecutableError) as failed:
            runner.exec_applied(apply(p))
    assert failed.value.hint == "eth0, net1 were given back"
    assert snapshot(multus) == before


# --- the command line ---------------------------------------------------------------------------

def test_a_tender_gets_one_net_pair_per_interface(multus, ukrun_exe, standin, kernel_file):
    got = report(ukrun(multus, ukrun_exe, "spt", "--interface", "eth0", "--interface", "net1",
                       "--net-name", "service", "--net-name", "private", "--tender", standin,
                       kernel_file, "x"))
    assert net_words(got["argv"]) == [
        "--net:service=tap0", "--net-mac:service=" + multus.mac,
        "--net:private=tap1", "--net-mac:private=" + NET1_MAC]
    assert got["argv"][-4:] == [kernel_file, "x", "--ipv4=172.30.0.2/16",
                                "--ipv4-gateway=172.30.0.1"]
    assert sorted(got["fds"]) == ["0", "1", "2"]
    inspected = report(ukrun(multus, ukrun_exe, "inspect", "--interface", "eth0",
                             "--interface", "net1"))
    assert inspected["source"] == "recorded" and inspected["interface"] == "eth0"
    assert [(n["interface"], n["ipv4"], n["source"]) for n in inspected["networks"]] == [
        ("eth0", "172.30.0.2/16", "recorded"), ("net1", "10.0.0.2/24", "recorded")]


def test_taps_as_fds_go_to_3_and_4(multus, ukrun_exe, standin, kernel_file):
    got = report(ukrun(multus, ukrun_exe, "spt", "--interface=eth0", "--interface=net1",
                       "--tap-fd", "--tender", standin, kernel_file))
    assert net_words(got["argv"])[::2] == ["--net:service=@3", "--net:service1=@4"]
    assert sorted(got["fds"]) == ["0", "1", "2", "3", "4"]
    assert got["iffs"] == {"3": ["tap0"], "4": ["tap1"]}


@pytest.mark.parametrize("tap_fd", [False, True])
def test_qemu_gets_one_netdev_per_interface(tap_fd, multus, ukrun_exe, standin, kernel_file):
    got = report(ukrun(multus, ukrun_exe, "qemu", "--qemu", standin, "--interface", "eth0",
                       "--interface", "net1", "--tap", "tapa", "--tap", "tapb",
                       *(["--tap-fd"] if tap_fd else []), kernel_file))
    argv = got["argv"]
    pairs = [argv[i:i + 4] for i, word in enumerate(argv) if word == "-device"]
    netdevs = (["tap,id=n0,fd=3", "tap,id=n1,fd=4"] if tap_fd else
               ["tap,id=n0,ifname=tapa,script=no,downscript=no",
                "tap,id=n1,ifname=tapb,script=no,downscript=no"])
    assert pairs == [
        ["-device", "virtio-net-pci,netdev=n0,mac=" + multus.mac, "-netdev", netdevs[0]],
        ["-device", "virtio-net-pci,netdev=n1,mac=" + NET1_MAC, "-netdev", netdevs[1]]]


@pytest.mark.parametrize("target", ["unix", "ukvm"])
def test_one_interface_targets_refuse_two(target, multus, ukrun_exe, standin, kernel_file):
    before = snapshot(multus)
    tender = [] if target == "unix" else ["--tender", standin]
    proc = ukrun(multus, ukrun_exe, target, "--interface", "eth0", "--interface", "net1",
                 *tender, standin if target == "unix" else kernel_file)
    assert proc.returncode == 2
    assert proc.stderr.startswith("ukrun: error: the %s target hands over one interface, not "
                                  "2 (--interface eth0 --interface net1) (hvt, spt" % target)
    assert proc.stderr.count("\n") == 1
    assert snapshot(multus) == before


@pytest.mark.parametrize("mode", ["never", "always"])
def test_a_program_execve_refuses_gives_both_back(mode, multus, tmp_path, standin):
    text = tmp_path / "not-a-program"
    text.write_text("no interpreter line\n")
    text.chmod(0o755)
    kernel = tmp_path / "k"
    kernel.write_bytes(b"\x7fELF")
    before = snapshot(multus)
    proc = multus.exec(sys.executable, "-c", RAW_CLI, "spt", "--init", mode, "--interface",
                       "eth0", "--interface", "net1", "--tender", str(text), str(kernel),
                       check=False)
    assert proc.returncode == 126, proc.stderr
    assert proc.stderr.startswith("ukrun: error: executing %s: Exec format error" % text)
    assert "eth0, net1 were given back" in proc.stderr
    assert snapshot(multus) == before


def test_library_usage_errors_name_the_interfaces(netns, programs):
    with in_netns(netns.name), pytest.raises(UsageError) as failed:
        plan(spt(programs, interface=BOTH, tap=("tap0", "tap1", "tap2")))
    assert failed.value.message == "--tap is given 3 times for 2 interfaces"
    assert failed.value.hint == "give it once per --interface, in the same order"


def test_inspect_in_process_lists_each(multus):
    with in_netns(multus.name):
        data = inspect(BOTH)
        alone = inspect("net1")
    assert data["interface"] == "eth0" and len(data["networks"]) == 2
    assert alone["interface"] == "net1" and alone["ipv4"] == "10.0.0.2/24"
    assert [n["interface"] for n in alone["networks"]] == ["net1"]
