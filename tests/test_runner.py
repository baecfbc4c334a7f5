"""The library flow in-process, inside docker-like containers (this thread moved in with in_netns):
plan changes nothing, apply's undo log restores everything whatever step fails, a restart finds
what the first run moved, and frames really cross the wiring to a guest on the tap.
"""
import errno
import json
import logging
import os

import pytest

import ukrun
import ukrun.kernel.rtnl
import ukrun.runner
import ukrun.report
import ukrun.network.survey
from inprocess import fail_at, spt
from nsutil import in_netns
from snapshots import snapshot, wiring_state
from tapguest import Guest, ping
from ukrun.errors import NetworkError, PrivilegeError, UsageError
from ukrun.planning import Options, plan
from ukrun.runner import apply
from ukrun.network.executor import Kernel

@pytest.fixture
def rich(container):
    """A container with more to restore: a secondary IPv4, a global IPv6, extra routes."""
    container.ip("addr", "add", "172.30.0.9/16", "dev", "eth0")
    container.ip("-6", "addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad")
    container.ip("route", "add", "10.9.0.0/16", "via", "172.30.0.1", "metric", "7")
    container.ip("-6", "route", "add", "default", "via", "2001:db8::1")
    return container


def test_library_exports():
    assert ukrun.Options is Options and ukrun.plan is plan and ukrun.apply is apply
    assert callable(ukrun.run) and ukrun.Plan.__name__ == "Plan"


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_plan_changes_nothing(wiring, rich, programs):
    before = snapshot(rich)
    with in_netns(rich.name):
        p = plan(spt(programs, wiring=wiring))
    assert snapshot(rich) == before
    data = json.loads(json.dumps(p.to_json()))
    assert data["network"]["ipv4"] == "172.30.0.2/16"
    assert data["network"]["ipv6"] == "2001:db8::2/64"
    # Dual stack: MirageOS's words for both families, after the unikernel's.
    assert data["argv"][-5:] == ["--ipv4=172.30.0.2/16", "--ipv4-gateway=172.30.0.1",
                                 "--ipv6=2001:db8::2/64", "--ipv6-gateway=2001:db8::1",
                                 "--accept-router-advertisements=false"]
    assert any("remove 172.30.0.9/16 from eth0" == s["do"] for s in data["steps"])
    assert any("remove the IPv6 route ::/0 via 2001:db8::1 from eth0" == s["do"]
               for s in data["steps"])
    # What is not handed over is said, not removed in silence.
    notes = "\n".join(data["notes"])
    assert "only 172.30.0.2/16 is handed over: eth0 also holds 172.30.0.9/16" in notes


def test_inspect_says_what_a_run_would_not_hand_over(rich):
    with in_netns(rich.name):
        data = ukrun.report.inspect("eth0")
    assert data["ipv4"] == "172.30.0.2/16"
    assert data["ipv6"] == "2001:db8::2/64" and data["gateway6"] == "2001:db8::1"
    assert any("172.30.0.9/16" in n for n in data["notes"])
    assert data["dns"] is not None


def _requests(monkeypatch, call) -> list:
    """The netlink requests ``call()`` sends, by what they ask for."""
    from ukrun.kernel.ffi import lib

    kinds = {lib.RTM_GETLINK: "links", lib.RTM_GETADDR: "addresses",
             lib.RTM_GETROUTE: "routes", lib.RTM_GETQDISC: "qdiscs",
             lib.RTM_GETTFILTER: "filters"}
    sent = []
    real = ukrun.kernel.rtnl.Rtnl._exchange

    def counting(self, type_, *args):
        sent.append(kinds.get(type_, type_))
        return real(self, type_, *args)

    monkeypatch.setattr(ukrun.kernel.rtnl.Rtnl, "_exchange", counting)
    try:
        call()
    finally:
        monkeypatch.undo()
    return sent


READ_ONCE = ["links", "addresses", "routes"]


def test_a_plan_reads_the_kernel_once(container, programs, monkeypatch):
    # (Not counting the moment a restart waits for a just-started guest to open its tap.)
    wait, ukrun.network.survey.TAKEOVER_WAIT = ukrun.network.survey.TAKEOVER_WAIT, 0
    try:
        _reads_once(container, programs, monkeypatch)
    finally:
        ukrun.network.survey.TAKEOVER_WAIT = wait


def _reads_once(container, programs, monkeypatch):
    """One snapshot: before it, discovery and the plan read links, addresses and routes each
    (a route dump per family): 10 requests for a first plan, 11 for a restart, 8 for inspect."""
    with in_netns(container.name):
        first = _requests(monkeypatch, lambda: plan(spt(programs)))
        # No ingress qdisc yet, so no filters to list.
        assert first == READ_ONCE + ["qdiscs"]
        apply(plan(spt(programs))).close()
        assert _requests(monkeypatch, lambda: plan(spt(programs))) == READ_ONCE + [
            "qdiscs", "filters", "filters"]  # eth0's and tap0's ingress
        assert _requests(monkeypatch, lambda: ukrun.report.inspect("eth0")) == READ_ONCE


@pytest.mark.parametrize("allow", [False, True])
def test_a_physical_nic_is_refused_unless_allowed(allow, container, programs, monkeypatch):
    # Nothing with a parent device can enter a test namespace here: eth0 is made to report
    # one, as a virtio NIC's link does (IFLA_PARENT_DEV_NAME).
    from ukrun.kernel import rtnl_objects

    real = rtnl_objects.link_from_message

    def with_parent(body):
        link = real(body)
        if link.name == "eth0":
            link = type(link)(**dict(vars(link), parent_dev="virtio2", parent_bus="virtio"))
        return link

    monkeypatch.setattr(ukrun.kernel.rtnl, "link_from_message", with_parent)
    before = snapshot(container)
    with in_netns(container.name):
        if allow:
            assert plan(spt(programs, allow_physical=True)).steps
        else:
            with pytest.raises(UsageError) as failed:
                plan(spt(programs))
            assert "eth0 is a physical NIC (parent device virtio2)" in str(failed.value)
    assert snapshot(container) == before


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
@pytest.mark.parametrize("tap_fd", [False, True])
def test_apply_then_undo_restores_everything(wiring, tap_fd, rich, programs):
    before = snapshot(rich)
    with in_netns(rich.name):
        applied = apply(plan(spt(programs, wiring=wiring, tap_fd=tap_fd)))
        assert bool(applied.tap_fds) == tap_fd
        wired = snapshot(rich)
        applied.undo()
    assert any(link["ifname"] == "tap0" for link in wired["links"])
    assert snapshot(rich) == before


def test_steps_reach_the_ukrun_logger_of_a_program_that_uses_logging(rich, programs, caplog):
    # pytest has loaded logging; a run without -v then says nothing on stderr but logs each step.
    with caplog.at_level(logging.INFO, logger="ukrun"), in_netns(rich.name):
        p = plan(spt(programs))
        apply(p).undo()
    logged = [r.getMessage() for r in caplog.records if r.name == "ukrun"]
    assert logged[:len(p.steps)] == [step.text for step in p.steps]
    assert any(m.startswith("undo: ") for m in logged)


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_a_failure_at_any_step_undoes_everything(wiring, rich, programs, monkeypatch):
    before = snapshot(rich)
    with in_netns(rich.name):
        steps = plan(spt(programs, wiring=wiring)).steps
    assert len(steps) > 8
    for index in range(len(steps)):
        with in_netns(rich.name):
            p = plan(spt(programs, wiring=wiring))
            fail_at(monkeypatch, p.steps[index])
            with pytest.raises(NetworkError) as failed:
                apply(p)
        monkeypatch.undo()
        assert failed.value.message == "%s: injected failure" % p.steps[index].text
        assert "undone" in failed.value.hint
        assert snapshot(rich) == before, "after a failure at step %d (%s)" % (
            index, p.steps[index].text)


def test_a_refused_step_is_a_privilege_error(container, programs, monkeypatch):
    before = snapshot(container)
    with in_netns(container.name):
        p = plan(spt(programs))
        real = Kernel.do

        def do(self, step):
            if step.op == "add_redirect":
                raise PermissionError(errno.EPERM, "Operation not permitted")
            return real(self, step)

        monkeypatch.setattr(Kernel, "do", do)
        with pytest.raises(PrivilegeError) as failed:
            apply(p)
    assert failed.value.exit_status == 77
    assert snapshot(container) == before


@pytest.mark.parametrize("mode", ["direct", "forked", "dropped"])
def test_a_failed_drop_gives_the_network_back(mode, container, programs, monkeypatch):
    """If the capability drop fails, nothing is exec'd and the network is given back."""
    from ukrun.kernel import caps
    from ukrun import runner

    def refuse(*args, **kw):
        raise PrivilegeError("dropping capabilities: capset: Operation not permitted")

    def no_exec(*args):  # this is pytest's own process: it must never be replaced
        raise AssertionError("execve reached")

    monkeypatch.setattr(caps, "drop", refuse)
    monkeypatch.setattr(os, "execve", no_exec)
    before = snapshot(container)
    with in_netns(container.name):
        p = plan(spt(programs, tap_fd=True))
        p.exec_mode = mode
        applied = apply(p)
        with pytest.raises(PrivilegeError) as failed:
            runner.exec_applied(applied)
    assert "given back" in str(failed.value)
    assert snapshot(container) == before


@pytest.mark.parametrize("wiring, clash, ip_add", [
    ("bridge", "br0", ["link", "add", "br0", "type", "bridge"]),
    ("tc", "tap0", ["tuntap", "add", "tap0", "mode", "tap"]),
])
def test_a_name_taken_after_preflight(wiring, clash, ip_add, container, programs):
    before = snapshot(container)
    with in_netns(container.name):
        p = plan(spt(programs, wiring=wiring))
        container.ip(*ip_add)  # someone else's, between plan and apply
        with pytest.raises(NetworkError) as failed:
            apply(p)
    assert clash in failed.value.message
    assert container.ip_json("link", "show", clash), "the other's %s must survive" % clash
    container.ip("link", "del", clash)
    assert snapshot(container) == before


def test_a_second_run_finds_what_the_first_moved(rich, programs):
    with in_netns(rich.name):
        first = plan(spt(programs, mac="random"))
        apply(first).close()
        wired = wiring_state(rich)
        second = plan(spt(programs, mac="random"))
        assert second.handovers[0].network.source == "recorded"
        assert [s.op for s in second.steps] == ["disable_offloads"]
        assert second.argv == first.argv  # same address, gateway and (random) MAC
        apply(second).close()
    assert wiring_state(rich) == wired


def test_a_second_run_with_the_other_wiring_rebuilds_it(container, programs):
    with in_netns(container.name):
        apply(plan(spt(programs, wiring="tc"))).close()
        tc_state = wiring_state(container)
        switched = apply(plan(spt(programs, wiring="bridge")))
        eth0 = container.ip_json("-d", "link", "show", "eth0")[0]
        assert eth0["master"] == "br0" and eth0["address"] != container.mac
        assert not container.tc_json("qdisc", "show", "dev", "eth0", "ingress")
        switched.undo()
    assert wiring_state(container) == tc_state


@pytest.mark.parametrize("bad, needle", [
    (dict(target="unix", tap_fd=True), "--tap-fd"),
    (dict(target="unix", mem=64), "--mem"),
    (dict(target="spt", cpu="max"), "--cpu"),
    (dict(target="spt", tender_args=("-x",), mem=0), "--mem"),
    (dict(target="spt", keep_caps=("none", "kill")), "'none' cannot be combined"),
    (dict(target="spt", init="sometimes"), "--init"),
    (dict(target="spt", args=("ok", 5)), "strings"),
])
def test_library_options_are_checked_first(bad, needle, netns, programs):
    exe, kernel = programs
    fields = dict(unikernel=exe if bad["target"] == "unix" else kernel, **bad)
    if fields["target"] == "spt":
        fields["tender"] = exe
    with in_netns(netns.name), pytest.raises(UsageError) as failed:
        plan(Options(**fields))
    assert needle in str(failed.value)


# --- frames through the wiring, to a guest on the tap ----------------------------------------

@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_frames_cross_the_wiring(wiring, docker_host, container, programs):
    with in_netns(container.name):
        applied = apply(plan(spt(programs, wiring=wiring)))
        applied.close()
    guest = Guest(container.name, "tap0", container.mac)
    try:
        assert ping(docker_host)
    finally:
        guest.close()


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_inherited_mac_keeps_the_hosts_first_ping(wiring, docker_host, container, programs):
    """The host cached the container's MAC before; a guest that never ARPs still gets pinged."""
    assert ping(docker_host)  # answered by the container's own kernel: the host caches eth0
    with in_netns(container.name):
        apply(plan(spt(programs, wiring=wiring))).close()
    guest = Guest(container.name, "tap0", container.mac, arp=False)
    try:
        assert ping(docker_host)
    finally:
        guest.close()


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_a_down_interface_is_brought_up_as_a_recorded_step(wiring, container, programs):
    container.ip("link", "set", "eth0", "down")
    container.ip("addr", "add", "172.30.0.2/16", "dev", "eth0", check=False)
    before = snapshot(container)
    with in_netns(container.name):
        p = plan(spt(programs, wiring=wiring))
        assert any("eth0 is administratively down" in n for n in p.notes)
        assert "set eth0 up" in [s.text for s in p.steps]
        applied = apply(p)
        assert "UP" in container.ip_json("link", "show", "eth0")[0]["flags"]
        applied.undo()
    assert snapshot(container) == before


# --- how the tap went to the guest decides whether a restart waits ------------------------------

def _waits(monkeypatch):
    """The taps each plan waited on for a guest to open them (survey's carrier wait)."""
    waited = []

    def await_carrier(rtnl, taps, timeout, every=True, give_up=None):
        waited.append((tuple(taps), timeout))
        return frozenset()

    monkeypatch.setattr(ukrun.network.survey, "await_carrier", await_carrier)
    return waited


@pytest.mark.parametrize("tap_fd", [False, True], ids=["by name", "as an fd"])
def test_a_restart_waits_only_for_a_guest_that_opens_its_tap_by_name(tap_fd, container,
                                                                      programs, monkeypatch):
    waited = _waits(monkeypatch)
    with in_netns(container.name):
        apply(plan(spt(programs, tap_fd=tap_fd))).close()
        record = container.ip_json("-d", "link", "show", "tap0")[0]["ifalias"]
        again = plan(spt(programs, tap_fd=tap_fd))
    assert record.startswith("ukrun:3 ") == tap_fd and (" t=fd " in record) == tap_fd
    assert again.handovers[0].network.source == "recorded"
    if tap_fd:
        assert waited == []  # no reader on a tap handed as an fd: no guest, at once
        assert not any("by name" in n for n in again.notes)
    else:
        assert waited == [(("tap0",), ukrun.network.survey.TAKEOVER_WAIT)]
        assert any("tap0 went to the guest by name: waiting up to" in n for n in again.notes)


def test_a_guest_holding_its_tap_as_an_fd_is_never_taken_over(container, programs):
    # A guest just exec'd with its tap as an fd holds it from before the run's lock went: a
    # second run finds the tap with carrier and changes nothing.
    with in_netns(container.name):
        applied = apply(plan(spt(programs, tap_fd=True)))
        held = applied.tap_fds  # what the guest inherits
        assert held
        applied.kernel.rtnl.close()  # the run is over; the guest keeps its fd
        before = snapshot(container)
        with pytest.raises(NetworkError, match="already handed to a running guest"):
            plan(spt(programs, tap_fd=True))
        assert snapshot(container) == before
        applied.kernel.close_taps()


def test_a_forged_record_that_claims_the_fd_form_is_refused(container, programs):
    with in_netns(container.name):
        apply(plan(spt(programs))).close()
        alias = container.ip_json("-d", "link", "show", "tap0")[0]["ifalias"]
        forged = alias.replace("ukrun:1 ", "ukrun:3 ").replace(" o=0 ", " o=0 6= h= t=pipe ")
        container.ip("link", "set", "tap0", "alias", forged)
        before = snapshot(container)
        with pytest.raises(NetworkError) as e:
            plan(spt(programs))
        assert "record on tap0: t='pipe' is not one of name, fd" in str(e.value)
        assert snapshot(container) == before
