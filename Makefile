# ukrun — every target sets up what it needs on a fresh Debian machine (as root).
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
# System packages the tests, the demo and the benchmarks use (never needed by ukrun itself).
SYSPKGS := iproute2 iputils-ping strace qemu-system-x86 busybox-static cpio man-db groff-base ethtool \
           docker.io debootstrap containernetworking-plugins runc python3-cffi-backend podman uidmap \
           slirp4netns catatonit
PYPKGS  := cffi setuptools wheel pytest hypothesis argparse-manpage dockerfile
PYTEST_ARGS ?=

.PHONY: all build test demo bench man clean sysdeps venv

all: build

# apt-get runs only when a package is missing, so repeated runs stay fast; docker.io's service is
# kept from starting in the machine's own namespace (tests/support/engine/apt-install says how).
sysdeps:
	@tests/support/engine/apt-install $(SYSPKGS)

$(VENV)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(PYPKGS)
	touch $@

venv: $(VENV)/.installed

# Editable install: the extension is built in place, the `ukrun` script lands in .venv/bin.
build: venv
	flock $(VENV)/.lock $(VPY) -m pip install -q --no-build-isolation --no-deps -e .

test: sysdeps build
	$(VPY) -m pytest $(PYTEST_ARGS) tests

demo: sysdeps build
	$(VPY) tests/support/demo.py

bench: sysdeps build
	$(VPY) benchmarks/run.py

man: build
	$(VPY) man/build.py man/ukrun.1

clean:
	rm -rf $(VENV) build dist *.egg-info ukrun/_core.* ukrun/*.so ukrun/ukrun-init .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
