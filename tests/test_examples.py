"""examples/: the Dockerfiles parse strictly, the Alpine one is what `ukrun dockerfile` writes,
and the pod manifest is well-formed (JSON-compatible YAML: no YAML library needed)."""
import json
import os

import pytest

from dockerfile_check import parse_dockerfile

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def read(*path):
    with open(os.path.join(EXAMPLES, *path)) as f:
        return f.read()


@pytest.mark.parametrize("image", ["alpine", "debian"])
def test_dockerfile_is_two_stages_ending_in_ukrun_hvt(image):
    parsed = parse_dockerfile(read(image, "Dockerfile"))
    froms = [value for word, _, value in parsed if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS ukrun-build")
    words = [word for word, _, _ in parsed]
    final = parsed[len(words) - 1 - words[::-1].index("FROM"):]
    (entrypoint,) = [value for word, _, value in final if word == "ENTRYPOINT"]
    assert entrypoint[:2] == ["ukrun", "hvt"] and entrypoint[-1] == "/unikernel/www.hvt"
    # No compiler in the image that runs: it is installed in the build stage only.
    final_runs = " ".join(value for word, _, value in final if word == "RUN")
    assert "gcc" not in final_runs and "python3" in final_runs


def test_alpine_builder_has_the_build_packages():
    text = read("alpine", "Dockerfile")
    for package in ("gcc", "musl-dev", "linux-headers", "libffi-dev"):
        assert " %s" % package in text


def test_alpine_dockerfile_is_what_ukrun_writes(tmp_path, monkeypatch):
    from ukrun import docker_build

    # The same build context it was generated from: a static tender, the unikernel, an sdist.
    (tmp_path / "solo5-hvt").write_bytes(open("/bin/busybox", "rb").read())
    (tmp_path / "solo5-hvt").chmod(0o755)
    (tmp_path / "www.hvt").write_bytes(b"x")
    (tmp_path / ("ukrun-%s.tar.gz" % docker_build.__version__)).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert docker_build.dockerfile("hvt", "www.hvt", run_options=["--mem=64"]) == read(
        "alpine", "Dockerfile")


def test_debian_installs_ukrun_as_ukrun_dockerfile_does():
    """Its stage-1 RUN is the Alpine one, to the byte: pip install, then the step that gives
    the installed ukrun back its -S (tests/test_docker.py runs that step)."""
    def venv_runs(image):
        return [value for word, _, value in parse_dockerfile(read(image, "Dockerfile"))
                if word == "RUN" and "pip install" in value]

    (alpine,) = venv_runs("alpine")
    assert venv_runs("debian") == [alpine]
    assert alpine.index("sed -i '1s|^#!/opt/ukrun/bin/python") > alpine.index("pip install")


def test_pod_manifest():
    text = read("kubernetes", "pod.yaml")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    pod = json.loads(body)  # JSON is YAML: what a YAML reader would make of it
    assert pod["kind"] == "Pod" and pod["apiVersion"] == "v1"
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"],
                                                            "add": ["NET_ADMIN"]}
    assert "devices.kubevirt.io/tun" in container["resources"]["limits"]
    assert "restart" in text.lower()


def test_restricted_pod_manifest():
    """What the Pod Security Standards "restricted" profile checks, for each container: no
    capability but NET_BIND_SERVICE added and ALL dropped, non-root, no privilege
    escalation, RuntimeDefault seccomp, no hostPath volume; the devices as resources."""
    text = read("kubernetes", "pod-restricted.yaml")
    pod = json.loads("\n".join(line for line in text.splitlines() if not line.startswith("#")))
    spec = pod["spec"]
    assert not any("hostPath" in v for v in spec.get("volumes", []))
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True
        assert sc.get("privileged", False) is False
        assert not container.get("volumeMounts")
        assert container["command"][0] == "ukrun"
        assert set(container["resources"]["limits"]) == {"devices.kubevirt.io/tun",
                                                         "devices.kubevirt.io/kvm"}


def test_cni_conflist_chains_ukrun_after_the_pod_network():
    from ukrun import cni

    conflist = json.loads(read("cni", "10-uknet.conflist"))
    first, last = conflist["plugins"]
    assert last["type"] == "ukrun-cni" and first["type"] == "bridge"
    # As a runtime hands it to the plugin: name and version from the list, a prevResult.
    config = dict(last, name=conflist["name"], cniVersion=conflist["cniVersion"],
                  prevResult={"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
                              "ips": [{"address": "10.88.0.2/16"}]})
    parsed = cni.parse_config(json.dumps(config).encode(), "ADD")
    assert (parsed["owner"], parsed["group"], parsed["tap"]) == (1000, 1000, "tap0")


def test_oci_hook_files():
    from ukrun import parser

    hooks_d = json.loads(read("oci-hook", "ukrun.json"))
    assert hooks_d["version"] == "1.0.0" and hooks_d["stages"] == ["createRuntime"]
    runc = json.loads(read("oci-hook", "config-hooks.json"))["hooks"]["createRuntime"]
    for hook in (hooks_d["hook"], runc[0]):
        assert hook["args"][:2] == ["ukrun", "hook"]
        ns = parser.parse(hook["args"][1:])  # options ukrun hook takes
        assert ns.command == "hook" and ns.interface == "eth0"
