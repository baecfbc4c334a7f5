# ukrun — every target sets up what it needs on a fresh Debian machine (as root).
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
# The musl pass's toolchain (tests/support/musl_python.py, README "musl"): musl-gcc and the
# kernel's headers. The sources (CPython, libffi, zlib, BusyBox) come with `apt-get source
# --download-only` through a private deb-src list made from the machine's own apt sources.
MUSLPKGS := musl musl-tools musl-dev linux-libc-dev
# System packages the tests, the demo and the benchmarks use (never needed by ukrun itself).
SYSPKGS := iproute2 iputils-ping strace qemu-system-x86 busybox-static cpio man-db groff-base ethtool \
           docker.io debootstrap containernetworking-plugins runc python3-cffi-backend podman uidmap \
           slirp4netns catatonit netavark aardvark-dns $(MUSLPKGS)
PYPKGS  := cffi setuptools wheel pytest hypothesis argparse-manpage dockerfile
PYTEST_ARGS ?=
# What the musl pass runs (README "musl" says why these): the unit tests, the namespace and
# guest tests, the attacks and the install layouts; not the CNI plugin and OCI hook tests (they
# run on the node, under Debian's python3) nor the Docker engine's (the engine test of the musl
# image runs in the glibc pass). Paths are inside .cache/musl/tree, the musl pass's copy.
MUSL_TESTS := tests/test_*.py tests/kernel tests/network tests/guest tests/support \
              tests/system/test_guests_answer.py tests/system/test_promises_under_attack.py \
              tests/system/test_exec_step.py tests/system/test_fast_path_under_attack.py \
              tests/system/test_default_interface.py tests/system/test_several_interfaces.py \
              tests/system/test_dual_stack_end_to_end.py tests/system/test_ipv6_moves_with_eth0.py \
              tests/system/test_installed_command.py
MUSL := .cache/musl

.PHONY: all build test test-musl demo bench man clean sysdeps venv

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
	@$(MAKE) --no-print-directory test-musl

# The same tests on a musl CPython (built into .cache/musl once, ~2.5 min), from a copy of the
# tree with its own musl-built extension. That CPython has no ssl module: pip takes wheels
# from the cached ones, not from the index.
test-musl: sysdeps build
	python="$$($(VPY) tests/support/musl_python.py)" && cd $(MUSL)/tree && \
	    PIP_NO_INDEX=1 PIP_FIND_LINKS=$(CURDIR)/$(MUSL)/wheels \
	    "$$python" -m pytest $(PYTEST_ARGS) $(MUSL_TESTS)

demo: sysdeps build
	$(VPY) tests/support/demo.py

bench: sysdeps build
	$(VPY) benchmarks/run.py $(BENCH_SECTIONS)

man: build
	$(VPY) man/build.py man/ukrun.1

clean:
	rm -rf $(VENV) build dist *.egg-info ukrun/_core.* ukrun/*.so ukrun/ukrun-init .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
