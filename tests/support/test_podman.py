"""The podman harness's own rules: limits podman may set here, configuration podman reads, and
an image cache key that follows what goes into the image."""
import os
import resource
import tomllib

import podman


def test_ulimits_stay_within_what_root_may_set_here():
    limits = dict(word.split("=") for word in podman.ulimits())
    with open("/proc/sys/kernel/pid_max") as fh:
        pid_max = int(fh.read())
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = (int(v) for v in limits[name].split(":"))
        assert soft == hard and (hard <= resource.getrlimit(which)[1]
                                 or resource.getrlimit(which)[1] == resource.RLIM_INFINITY)
    assert int(limits["nproc"].split(":")[1]) <= pid_max


def test_the_configuration_keeps_podman_in_its_own_directories(tmp_path):
    dirs = [str(tmp_path / d) for d in ("conf", "storage", "run", "tmp", "networks")]
    env = podman.write_config(*dirs)
    with open(env["CONTAINERS_CONF"], "rb") as fh:
        conf = tomllib.load(fh)
    with open(env["CONTAINERS_STORAGE_CONF"], "rb") as fh:
        storage = tomllib.load(fh)["storage"]
    assert conf["containers"]["default_ulimits"] == podman.ulimits()
    assert conf["engine"]["tmp_dir"] == dirs[3] and conf["engine"]["lock_type"] == "file"
    assert conf["network"]["network_config_dir"] == dirs[4]
    assert (storage["driver"], storage["graphroot"], storage["runroot"]) == ("vfs", *dirs[1:3])


def test_the_image_key_follows_the_sources(monkeypatch, tmp_path):
    key = podman.image_key()
    assert podman.image_key() == key
    guest = tmp_path / "guests"
    guest.mkdir()
    (guest / "uguest.py").write_text("changed\n")
    monkeypatch.setattr(podman, "SUPPORT", str(tmp_path))
    (tmp_path / "engine.py").write_text("")
    assert podman.image_key() != key
    assert os.path.exists(os.path.join(podman.ROOT, "examples", "debian", "Dockerfile"))
