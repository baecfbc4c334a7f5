"""ukrun.kernel.process's namespace lock: one run per network namespace at a time, taken only with
CAP_NET_ADMIN, gone with its holder (exit, exec, SIGKILL), and cheap to let go. It is netfilter
queue LOCK_QUEUE where the kernel has NFQUEUE (this one does), else the tap LOCK_NAME; a run of
either kind waits for the other."""
import errno
import os
import sys
import textwrap
import time

import pytest

import sysheaders
import ukrun
from nsutil import in_netns
from ukrun.kernel import nslock
from ukrun.errors import NetworkError
from ukrun.kernel.netlink_bodies import NFGENMSG, NFQNL_MSG_CONFIG_CMD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ukrun.__file__)))


@pytest.mark.parametrize("layout", [NFGENMSG, NFQNL_MSG_CONFIG_CMD], ids=lambda l: l.cname)
def test_layout_matches_the_c_compiler(layout):
    ffi = sysheaders.ffi
    assert layout.size == ffi.sizeof(layout.cname)
    for name, _ in layout.fields:
        assert layout.offsetof(name) == ffi.offsetof(layout.cname, name), name


def bound_queues(container):
    """The queue numbers bound in CONTAINER's namespace, as the kernel lists them."""
    out = container.exec("cat", "/proc/net/netfilter/nfnetlink_queue").stdout
    return [int(line.split()[0]) for line in out.splitlines()]


def test_one_holder_at_a_time_and_the_queue_is_the_lock(container):
    with in_netns(container.name):
        lock = nslock.NamespaceLock()
        try:
            assert lock.kind == "queue"
            assert bound_queues(container) == [nslock.LOCK_QUEUE]
            with pytest.raises(NetworkError, match="has not finished in 0.1 s"):
                nslock.NamespaceLock(wait=0.1)
        finally:
            lock.release()
        assert bound_queues(container) == []
        with nslock.NamespaceLock(wait=0.1) as again:
            assert again.kind == "queue"
    assert container.ip_json("link", "show", "type", "tun") == []  # no tap made for it


def test_each_namespace_has_its_own(docker_host):
    first, second = docker_host.container(), docker_host.container()
    with in_netns(first.name):
        one = nslock.NamespaceLock(wait=0.1)
    try:
        with in_netns(second.name):
            nslock.NamespaceLock(wait=0.1).release()
    finally:
        one.release()


HOLDER = textwrap.dedent("""\
    import os, sys, time
    sys.path.insert(0, sys.argv[1])
    from ukrun.kernel.nslock import NamespaceLock
    lock = NamespaceLock()
    print("holding", flush=True)
    if sys.argv[2] == "exec":
        time.sleep(0.2)
        os.execv("/bin/sleep", ["sleep", "30"])
    time.sleep(30)
""")


@pytest.mark.parametrize("end", ["exec", "SIGKILL"])
def test_the_lock_goes_with_its_holder(end, container):
    holder = container.popen(sys.executable, "-c", HOLDER, ROOT, end, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with in_netns(container.name):
            with pytest.raises(NetworkError):
                nslock.NamespaceLock(wait=0.05)
            if end == "SIGKILL":
                holder.kill()
                holder.wait(5)
            # After its execve (or its death) the kernel has unbound the queue: the holder's
            # socket was close-on-exec. Waited for, not slept for: the exec comes after 0.2 s.
            nslock.NamespaceLock(wait=5).release()
            if end == "exec":
                assert holder.poll() is None  # the program it exec'd runs on, lock-free
    finally:
        holder.kill()
        holder.wait(5)


BINDER = textwrap.dedent("""\
    import sys
    sys.path.insert(0, sys.argv[1])
    from ukrun.kernel import nslock
    try:
        nslock._bind_queue()
        print("bound")
    except OSError as e:
        print(e.errno)
""")


@pytest.mark.parametrize("who", [
    ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
     "--bounding-set=-all"],
    ["setpriv", "--inh-caps=-all", "--bounding-set=-net_admin"],  # root, but no NET_ADMIN
], ids=["nobody", "root without NET_ADMIN"])
def test_without_cap_net_admin_the_queue_is_refused(who, container):
    proc = container.exec(*who, sys.executable, "-c", BINDER, ROOT, check=False)
    assert proc.stdout.strip() == "1", proc.stderr  # EPERM: nfnetlink asks for NET_ADMIN
    assert bound_queues(container) == []


def test_a_run_without_cap_net_admin_is_told_so(container):
    code = ("import sys; sys.path.insert(0, %r)\nfrom ukrun.kernel import nslock\n"
            "nslock.NamespaceLock(wait=0.1)" % ROOT)
    proc = container.exec("setpriv", "--inh-caps=-all", "--bounding-set=-net_admin",
                          sys.executable, "-c", code, check=False)
    assert "PrivilegeError: CAP_NET_ADMIN is required to wire the network" in proc.stderr


def test_a_tap_lock_holds_a_queue_run_back(container):
    # What a run on a kernel without NFQUEUE holds (and what test_attacks makes by hand).
    container.ip("tuntap", "add", nslock.LOCK_NAME, "mode", "tap")
    with in_netns(container.name):
        with pytest.raises(NetworkError, match="netfilter queue 30059 or the tap ukrun-lock"):
            nslock.NamespaceLock(wait=0.1)
        assert bound_queues(container) == []  # it let go of the queue it bound meanwhile
        container.ip("link", "del", nslock.LOCK_NAME)
        nslock.NamespaceLock(wait=0.1).release()


@pytest.mark.parametrize("refusal", [errno.EPROTONOSUPPORT, errno.EINVAL])
def test_without_nfqueue_the_lock_is_a_tap_again(refusal, container, monkeypatch):
    # No netfilter netlink socket (EPROTONOSUPPORT), or no queue subsystem in it (EINVAL).
    def no_queue():
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(nslock, "_bind_queue", no_queue)
    with in_netns(container.name):
        lock = nslock.NamespaceLock(wait=0.1)
        try:
            assert lock.kind == "tap"
            tun = [l["ifname"] for l in container.ip_json("link", "show", "type", "tun")]
            assert tun == [nslock.LOCK_NAME]
            with pytest.raises(NetworkError):
                nslock.NamespaceLock(wait=0.1)
        finally:
            lock.release()
        # Not persistent: it went with its fd.
        assert container.ip_json("link", "show", "type", "tun") == []


def test_letting_go_of_the_queue_costs_no_grace_period(container):
    # The tap lock's removal waited for an RCU grace period inside the run's execve (15 to
    # 40 ms here); unbinding the queue does not wait for one. Loose bound: a loaded machine.
    with in_netns(container.name):
        times = []
        for _ in range(5):
            lock = nslock.NamespaceLock()
            began = time.perf_counter()
            lock.release()
            times.append(time.perf_counter() - began)
    assert sorted(times)[2] < 0.005, times
