"""A container of a real engine (Docker or Podman), seen from outside: its logs, its state,
the lines its guest prints."""
import json
import time


class Box:
    """One container, seen through its engine's `logs` and `inspect` (CLI: the engine's
    command, ``Engine.docker`` or ``Podman.podman``; both take the same templates)."""

    def __init__(self, cli, cid):
        self.cli, self.id = cli, cid

    def logs(self):
        proc = self.cli("logs", self.id, check=False)
        return proc.stdout, proc.stderr

    def inspect(self, template):
        return self.cli("inspect", "-f", template, self.id).stdout.strip()

    def ip(self):
        return self.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")

    def mac(self):
        return self.inspect("{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}")

    def running(self):
        return self.inspect("{{.State.Running}}") == "true"

    def explain(self):
        out, err = self.logs()
        return "container %s (%s)\nstdout:\n%s\nstderr:\n%s" % (
            self.id[:12], self.inspect("{{.State.Status}} exit {{.State.ExitCode}}"),
            out[-3000:], err[-3000:])

    def wait_line(self, predicate, timeout, nth=1, what="line"):
        """The NTH stdout line matching PREDICATE (lines of every run, restarts included)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [l.rstrip("\r") for l in self.logs()[0].splitlines()]
            hits = [l for l in lines if predicate(l)]
            if len(hits) >= nth:
                return hits[nth - 1]
            if time.monotonic() > deadline:
                raise AssertionError("no %s #%d within %ss\n%s" % (what, nth, timeout,
                                                                  self.explain()))
            time.sleep(0.2)

    def ready(self, nth=1, timeout=60):
        """uguest's JSON ready line (or pinger's probe report)."""
        return json.loads(self.wait_line(
            lambda l: l.startswith("{") and ('"ready"' in l or '"probes"' in l),
            timeout, nth, "ready line"))

    def wait_exit(self, timeout=60):
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                raise AssertionError("still running after %ss\n%s" % (timeout, self.explain()))
            time.sleep(0.2)
        return int(self.inspect("{{.State.ExitCode}}"))
