"""``ukrun cni`` chained after Debian's bridge plugin, invoked as a runtime invokes plugins, and
the unikernel run as a non-root user with no capability at all.

The node is a namespace of the test's (the bridge plugin runs in it), the pod another one;
all traffic is between the two. What the tests show: ADD prints prevResult unchanged and
leaves a persistent tap that only the pod's uid and gid may attach to; the guest, started by
``ukrun unix`` as uid 1000 with every capability set empty, answers ping and UDP from the
node; a restart reuses the handover at once; another uid cannot attach (the kernel refuses,
and ukrun refuses first, in one line); DEL gives the namespace back exactly as the bridge
plugin left it, twice in a row, and with the namespace gone; CHECK tells a complete handover
from a missing one; a tap handed to a tender as an fd by the unprivileged run itself; and
the same-process undo of ``ukrun.handover.hand_over``.
"""
import json
import os
import subprocess
import time

import pytest

import cnihost  # noqa: E402
from cnihost import OTHER_UID, POD_IP, POD_UID, SYSTEM_PYTHON  # noqa: E402
from guests import LineReader, ping, stop, udp_echo  # noqa: E402
from snapshots import snapshot  # noqa: E402

pytestmark = pytest.mark.skipif(cnihost.missing() is not None, reason=str(cnihost.missing()))


def exactly(snap):
    """A namespace snapshot without tx queue lengths: the kernel gives a device without a
    queue (the bridge plugin's veth) one of 1000 the first time an ingress qdisc is added to
    it, and no record can say it had none. (A run's own undo does not restore it either.)"""
    for section in ("links", "addrs"):
        for link in snap[section]:
            link.pop("txqlen", None)
    return snap


def start_guest(pod, guest, *args, uid=POD_UID):
    argv = pod.as_pod_user(uid) + [SYSTEM_PYTHON, "-m", "ukrun", "unix", guest, *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, LineReader(proc)


def ready(reader, timeout=20):
    return json.loads(reader.wait_for(lambda line: line.startswith("{"), timeout))


def tap_info(pod, tap="tap0"):
    """The tap's tun settings as ``ip -d`` reports them (owner and group as numbers) and
    its alias."""
    import grp
    import pwd

    (link,) = pod.pod.ip_json("-d", "link", "show", tap)
    info = dict(link["linkinfo"]["info_data"])
    for key, by_name in (("user", pwd.getpwnam), ("group", grp.getgrnam)):
        if isinstance(info.get(key), str):  # ip names the ids it can
            info[key] = (by_name(info[key]).pw_uid if key == "user"
                         else by_name(info[key]).gr_gid)
    return info, link.get("ifalias", "")


def test_add_unprivileged_guest_restart_del(pod, tmp_path):
    bridge_left = exactly(snapshot(pod.pod))
    code, result, err = pod.ukrun("ADD", pod.ukrun_config())
    assert code == 0, (result, err)
    assert result == pod.prev_result  # unchanged: the runtime still reports the pod's IP
    info, alias = tap_info(pod)
    assert (info["persist"], info["user"], info["group"]) == (True, POD_UID, POD_UID), info
    assert alias.startswith("ukrun:") and "i=eth0" in alias
    assert pod.ukrun("CHECK", pod.ukrun_config())[0] == 0

    guest = pod.guest()
    proc, reader = start_guest(pod, guest, "--exit-after=30")
    try:
        line = ready(reader)
        for mask in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
            assert int(line["status"][mask], 16) == 0, line["status"]
        assert line["status"]["Uid"].split()[0] == str(POD_UID)
        assert line["ipv4"] == "%s/24" % POD_IP and line["gateway"] == cnihost.GATEWAY
        ping(pod.node, POD_IP, timeout=10)
        udp_echo(pod.node.name, POD_IP, 7, os.urandom(600), timeout=10)
    finally:
        stop(proc)

    # A restart of the container: the handover is reused at once (no takeover wait: a run
    # that changes nothing lets the kernel refuse a second reader instead).
    started = time.monotonic()
    proc, reader = start_guest(pod, guest, "--exit-after=30")
    try:
        ready(reader)
        assert time.monotonic() - started < 0.9  # TAKEOVER_WAIT is 1 s
        ping(pod.node, POD_IP, timeout=10)
    finally:
        stop(proc)

    code, result, err = pod.ukrun("DEL", pod.ukrun_config())
    assert (code, result) == (0, None), err
    assert exactly(snapshot(pod.pod)) == bridge_left
    code, result, err = pod.ukrun("DEL", pod.ukrun_config())  # idempotent
    assert (code, result) == (0, None), err
    assert exactly(snapshot(pod.pod)) == bridge_left
    code, result, _ = pod.ukrun("CHECK", pod.ukrun_config())
    assert code == 1 and result["code"] == 100 and "no record" in result["msg"], result


def test_another_uid_cannot_attach(pod, tmp_path):
    assert pod.ukrun("ADD", pod.ukrun_config())[0] == 0
    # The kernel itself refuses (tun_not_capable): uid 1001, no capability, not in group 1000.
    probe = ("from ukrun.kernel.tap import open_tap\n"
             "try:\n    open_tap('tap0')\nexcept OSError as e:\n    print(e.errno)\n"
             "else:\n    print('attached')\n")
    attach = subprocess.run(pod.as_pod_user(OTHER_UID) + [SYSTEM_PYTHON, "-c", probe],
                            capture_output=True, text=True, timeout=30)
    assert attach.stdout.strip() == "1", attach  # EPERM
    # and ukrun says so before trying, in one line, changing nothing
    before = snapshot(pod.pod)
    proc, reader = start_guest(pod, pod.guest(), uid=OTHER_UID)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert err.decode().count("\n") == 1 and err.startswith(b"ukrun: error: "), err
    assert b"belongs to uid 1000" in err
    assert snapshot(pod.pod) == before


def test_no_handover_and_no_net_admin_refuses(pod, tmp_path):
    before = snapshot(pod.pod)
    proc, reader = start_guest(pod, pod.guest())
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 77, err
    assert err.decode().count("\n") == 1 and b"CAP_NET_ADMIN is required" in err, err
    assert b"ukrun-cni" in err and b"--cap-add=NET_ADMIN" in err
    assert snapshot(pod.pod) == before


def test_tap_open_to_the_namespace_when_no_owner_is_named(pod, tmp_path):
    """Neither owner nor group: the tap has none, and any uid in the pod may attach."""
    assert pod.ukrun("ADD", pod.ukrun_config(owner=None, group=None))[0] == 0
    info, _ = tap_info(pod)
    assert "user" not in info and "group" not in info, info
    proc, reader = start_guest(pod, pod.guest(), "--exit-after=30", uid=OTHER_UID)
    try:
        ready(reader)
        ping(pod.node, POD_IP, timeout=10)
    finally:
        stop(proc)


def test_del_with_the_namespace_gone(pod):
    assert pod.ukrun("ADD", pod.ukrun_config())[0] == 0
    code, result, err = pod.ukrun("DEL", pod.ukrun_config(), netns="/run/netns/ukgone%d"
                                  % os.getpid())
    assert (code, result) == (0, None), err
    code, result, err = pod.ukrun("DEL", pod.ukrun_config(), netns="")
    assert (code, result) == (0, None), err


def test_tap_as_an_fd_without_a_capability(pod):
    """spt with --tap-fd: the unprivileged run opens the tap itself (its owner needs no
    capability) and hands it to the tender as fd 3."""
    assert pod.ukrun("ADD", pod.ukrun_config())[0] == 0
    unikernel = os.path.join(pod.shared, "unikernel.spt")
    with open(unikernel, "w") as f:
        f.write("a Solo5 unikernel stand-in\n")
    os.chmod(unikernel, 0o644)
    argv = pod.as_pod_user() + [SYSTEM_PYTHON, "-m", "ukrun", "spt", "--tap-fd", "--tender",
                                pod.guest(), unikernel, "--exit-after=30"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = ready(LineReader(proc))
        assert "3" in line["fds"], line["fds"]  # the tap, inherited
        assert any(word.startswith("--net:service=@") for word in line["argv"]), line["argv"]
        ping(pod.node, POD_IP, timeout=10)
    finally:
        stop(proc)


def test_same_process_undo_is_exact(pod):
    """ukrun.handover.hand_over's Applied.undo(), in the process that made it."""
    from nsutil import in_netns
    from ukrun import handover

    before = exactly(snapshot(pod.pod))
    with in_netns(pod.pod.name):
        applied = handover.hand_over("eth0", "tap0", "tc", POD_UID, POD_UID)
        assert pod.pod.ip_json("-4", "addr", "show", "eth0") == []  # moved
        applied.undo()
    assert exactly(snapshot(pod.pod)) == before
