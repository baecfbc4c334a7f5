"""Helpers shared by the guest tests, the end-to-end tests and the demo.

Every wait here is bounded: a helper that cannot get its answer in time raises
AssertionError with what it saw, so no test hangs on a silent guest.
"""
import ipaddress
import json
import os
import select
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # nsutil, when imported from the demo

from nsutil import in_netns  # noqa: E402

UGUEST_SOURCE = os.path.join(HERE, "uguest.py")
VM_READY = "UKRUN-GUEST-READY"
VM_HTTP_PORT = 8080


def install_uguest(directory, name="uguest"):
    """Write an executable copy of the userspace guest into DIRECTORY.

    ukrun execs the unikernel (or tender) path itself, so the guest must be a file with a
    shebang naming this very interpreter (the venv's, where ukrun._core is importable).
    """
    path = os.path.join(str(directory), name)
    with open(UGUEST_SOURCE) as src, open(path, "w") as dst:
        dst.write("#!%s\n" % sys.executable)
        dst.write(src.read())
    os.chmod(path, 0o755)
    return path


def install_dummy_unikernel(directory, name="unikernel.hvt"):
    """A stand-in for the Solo5 unikernel file a tender loads (uguest only records it)."""
    path = os.path.join(str(directory), name)
    with open(path, "w") as fh:
        fh.write("#!/bin/sh\necho 'a Solo5 unikernel is loaded by its tender' >&2\nexit 1\n")
    os.chmod(path, 0o755)
    return path


def vm_guest():
    """Build (or reuse from .cache/guests) the Linux VM guest: {"kernel", "initrd"}."""
    sys.path.insert(0, HERE)
    import build_vm

    return build_vm.build()


class LineReader:
    """Reads a child's stdout line by line with a deadline (no thread, no blocking read)."""

    def __init__(self, proc):
        self.proc = proc
        self.buffer = b""
        self.lines = []

    def wait_for(self, predicate, timeout, what="the ready line"):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\n", 1)
                # Serial consoles end lines in \r\n.
                line = raw.decode(errors="replace").rstrip("\r")
                self.lines.append(line)
                if predicate(line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %ss; output so far:\n%s"
                                     % (what, timeout, "\n".join(self.lines[-40:])))
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.proc.wait(timeout=5)
                    raise AssertionError("process exited (%s) before %s; output:\n%s"
                                         % (self.proc.returncode, what,
                                            "\n".join(self.lines[-40:] + [self.buffer.decode()])))
                self.buffer += chunk

    def ready_json(self, timeout=15):
        """The uguest's JSON ready line, parsed."""
        line = self.wait_for(lambda l: l.startswith("{") and '"ready"' in l, timeout)
        return json.loads(line)

    def vm_ready(self, timeout=60):
        """The Linux guest's ready line as a dict: {"ip": ..., "gw": ..., "mac": ...}, plus
        ip6, gw6, dns, dev, host and fmt when the guest configured them (see build_vm)."""
        line = self.wait_for(lambda l: l.startswith(VM_READY), timeout, "the VM ready line")
        return dict(word.split("=", 1) for word in line.split()[1:])


def stop(proc, timeout=5):
    """Terminate a child and reap it; SIGKILL when it does not go in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def ping(ns, address, timeout=10, count=1, source=None):
    """Ping ADDRESS (IPv4 or IPv6) from namespace NS, from address SOURCE when given, until it
    answers; returns seconds to the first answer."""
    start = time.monotonic()
    deadline = start + timeout
    where = ["-I", source] if source else []
    while True:
        proc = ns.exec("ping", "-c", count, "-W", "1", *where, address, check=False)
        if proc.returncode == 0:
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            raise AssertionError("no ping answer from %s within %ss:\n%s"
                                 % (address, timeout, proc.stdout + proc.stderr))


def ping_once(ns, address, wait=2):
    """One echo request, no retry: True when it was answered."""
    proc = ns.exec("ping", "-c", "1", "-W", wait, address, check=False)
    return proc.returncode == 0


def udp_echo(ns_name, address, port=7, payload=b"hello ukrun", timeout=10):
    """Send PAYLOAD from namespace NS_NAME to ADDRESS:PORT (IPv4 or IPv6) until it is echoed;
    returns seconds."""
    start = time.monotonic()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with in_netns(ns_name):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        # A zone ("fe80::1%tap0") names an interface of the namespace: resolve it in there.
        sockaddr = socket.getaddrinfo(address, port, family, socket.SOCK_DGRAM)[0][4]
    try:
        sock.settimeout(0.5)
        while time.monotonic() - start < timeout:
            sock.sendto(payload, sockaddr)
            try:
                data, peer = sock.recvfrom(65536)
            except socket.timeout:
                continue
            # An IPv6 peer comes back as (address, port, flowinfo, scope_id), address compressed.
            assert data == payload and (ipaddress.ip_address(peer[0].split("%")[0]), peer[1]) \
                == (ipaddress.ip_address(address.split("%")[0]), port), (data, peer)
            return time.monotonic() - start
    finally:
        sock.close()
    raise AssertionError("no UDP echo from %s:%d within %ss" % (address, port, timeout))


def http_get(ns_name, address, port=VM_HTTP_PORT, timeout=30, path="/"):
    """GET PATH from namespace NS_NAME (IPv4 or IPv6 ADDRESS), retried until it answers;
    returns (body, seconds).

    The kernel answers ping before httpd is up, so connection errors are retried.
    The socket is made while the thread is in the namespace, so urllib works as usual.
    """
    start = time.monotonic()
    last = None
    host = "[%s]" % address if ":" in address else address
    while time.monotonic() - start < timeout:
        try:
            with in_netns(ns_name):
                with urllib.request.urlopen("http://%s:%d%s" % (host, port, path), timeout=3) as r:
                    return r.read().decode(), time.monotonic() - start
        except OSError as e:
            last = e
            time.sleep(0.3)
    raise AssertionError("no HTTP answer from %s:%d within %ss: %s" % (address, port, timeout, last))


class UkrunRun:
    """One `ukrun` started in a container: its stdout is the guest's once ukrun has exec'd;
    its stderr goes to a file (a full stderr pipe would block the guest)."""

    def __init__(self, container, tmp_path, ukrun_exe, argv):
        self.container = container
        self.errlog = tmp_path / ("ukrun-%s-%d.err" % (container.name, time.monotonic_ns()))
        with open(self.errlog, "wb") as err:
            self.proc = container.popen(ukrun_exe, *argv, stderr=err)
        self.out = LineReader(self.proc)

    def stderr(self):
        return self.errlog.read_text(errors="replace")

    def _explained(self, wait):
        try:
            return wait()
        except AssertionError as e:
            raise AssertionError("%s\nukrun stderr:\n%s" % (e, self.stderr())) from None

    def ready_json(self, timeout=20):
        return self._explained(lambda: self.out.ready_json(timeout))

    def vm_ready(self, timeout=60):
        return self._explained(lambda: self.out.vm_ready(timeout))

    def exit_status(self, timeout=20):
        return self.proc.wait(timeout=timeout)
