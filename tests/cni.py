"""Calling CNI plugins as a container runtime does (the CNI spec's environment, the network
configuration as JSON on stdin, the result as JSON on stdout), run inside a host-like network
namespace of the test's own: the bridge plugin makes its bridge in the namespace it runs in.
host-local keeps its leases under a directory the caller gives (never /var/lib/cni)."""
import json
import os
import subprocess

CNI_PATH = "/usr/lib/cni"


def available(*plugins) -> str | None:
    """Why these plugins cannot run here (None: they can)."""
    missing = [p for p in plugins if not os.access(os.path.join(CNI_PATH, p), os.X_OK)]
    if missing:
        return "no CNI plugin %s in %s (Debian's containernetworking-plugins)" % (
            ", ".join(missing), CNI_PATH)
    return None


def bridge_config(name, bridge, subnet, data_dir, gateway=True) -> dict:
    """A bridge + host-local network configuration (cniVersion 1.0.0)."""
    return {"cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": bridge,
            "isGateway": gateway, "ipMasq": False,
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(data_dir),
                     "routes": [{"dst": "0.0.0.0/0"}]}}


def invoke(command, config: dict, host_netns: str, netns: str, ifname: str,
           container_id: str, check=True) -> subprocess.CompletedProcess:
    """Run ``config``'s plugin with CNI_COMMAND=``command`` (ADD, DEL, CHECK) for the
    container whose network namespace is /run/netns/``netns``, from inside ``host_netns``."""
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=container_id,
               CNI_NETNS="/run/netns/%s" % netns, CNI_IFNAME=ifname, CNI_PATH=CNI_PATH)
    plugin = os.path.join(CNI_PATH, config["type"])
    proc = subprocess.run(["ip", "netns", "exec", host_netns, plugin], input=json.dumps(config),
                          env=env, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError("CNI %s %s failed (%d): %s%s" % (
            config["type"], command, proc.returncode, proc.stdout, proc.stderr))
    return proc


def add(config, host_netns, netns, ifname, container_id) -> dict:
    """CNI ADD: the plugin's result (interfaces, ips, routes)."""
    return json.loads(invoke("ADD", config, host_netns, netns, ifname, container_id).stdout)


def delete(config, host_netns, netns, ifname, container_id) -> None:
    """CNI DEL; a DEL that fails is not hidden."""
    invoke("DEL", config, host_netns, netns, ifname, container_id)
