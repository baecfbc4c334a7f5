"""A runc bundle for the hook test: a rootfs made of the node's own directories, bind-mounted
read-only (no image to build), a process with an empty capability set, the pod's network
namespace by path and ukrun's hook as a createRuntime hook (tests/system/test_oci_hook.py)."""
import json
import os
import subprocess

RUNC = "/usr/bin/runc"
HOST_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc")


def bundle_config(bundle, argv, netns, hook, uid, env=(), shared=(), poststop=None):
    """config.json for ``argv`` as ``uid`` with no capability, in network namespace ``netns``
    (a path), with ``hook`` (argv of its program) as the createRuntime hook."""
    spec = subprocess.run([RUNC, "spec", "--bundle", bundle], capture_output=True, text=True)
    assert spec.returncode == 0, spec.stderr
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    os.makedirs(os.path.join(bundle, "rootfs"), exist_ok=True)
    process = config["process"]
    process.update(terminal=False, args=list(argv), noNewPrivileges=True,
                   user={"uid": uid, "gid": uid},
                   capabilities={k: [] for k in ("bounding", "effective", "permitted",
                                                 "inheritable", "ambient")})
    process["env"] = process["env"] + list(env)
    config["root"] = {"path": "rootfs", "readonly": True}
    config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                             "options": ["nosuid", "nodev"]})
    for directory in HOST_DIRS + tuple(shared):  # after /tmp: a shared one may be under it
        if os.path.islink(directory):  # /bin -> usr/bin on a merged /usr: the same link
            os.symlink(os.readlink(directory), os.path.join(bundle, "rootfs", directory[1:]))
        elif os.path.isdir(directory):
            config["mounts"].append({"destination": directory, "type": "bind",
                                     "source": directory, "options": ["rbind", "ro"]})
    linux = config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    linux["namespaces"].append({"type": "network", "path": netns})
    linux["devices"] = [{"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200,
                         "fileMode": 0o666, "uid": 0, "gid": 0}]
    linux.setdefault("resources", {}).setdefault("devices", []).append(
        {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"})
    config["hooks"] = {"createRuntime": [{"path": hook[0], "args": list(hook)}]}
    if poststop:
        config["hooks"]["poststop"] = [{"path": poststop[0], "args": list(poststop)}]
    with open(path, "w") as f:
        json.dump(config, f, indent=1)
    return config
