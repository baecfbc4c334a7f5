"""The package's layers, read from its own imports (function-local ones included).

LAYERS is the one place the order is written: a module may import from its own entry and from
the entries above it in this list, never from one below it or beside it; no import cycle at
all. The README's "How the code is laid out" describes the same list.
"""
import ast
import os

import pytest

import ukrun

# Top first: each row may import the rows under it. Entries in one row stand side by side and
# may not import each other (the network wiring knows nothing of guests, and the reverse).
LAYERS = [
    ["ukrun.__main__", "ukrun"],            # the package's face: lazy names, python -m ukrun
    ["ukrun.cli"],                          # the command: parse, call the library
    ["ukrun.parser"],                       # argparse, for help, errors and other commands
    ["ukrun.report", "ukrun.docker_build"],  # the commands besides a run
    ["ukrun.docker"],                       # what a target's image holds; docker run flags
    ["ukrun.cni", "ukrun.oci_hook"],        # the handover as a CNI plugin, as an OCI hook
    ["ukrun.handover"],                     # hand over without exec; give back from the record
    ["ukrun.runner"],                       # apply, undo, drop, exec
    ["ukrun.planning"],                     # Options, Plan, plan
    ["ukrun.preflight", "ukrun.run_line"],  # the checks that need no change; a run's argv
    ["ukrun.options"],                      # the option table
    ["ukrun.network", "ukrun.guest"],       # what moves where; what the guest is given
    ["ukrun.kernel"],                       # what talks to Linux
    ["ukrun.errors", "ukrun.valueclass", "ukrun._version", "ukrun._core", "ukrun._build"],
]

PACKAGE = os.path.dirname(os.path.abspath(ukrun.__file__))
MAX_LINES = 400


def module_files():
    """{module name: path} for every .py file of the package."""
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel.pop()
                found[".".join(rel)] = path
    return found


MODULES = module_files()


def imported(path, name):
    """The ukrun modules the file at ``path`` (module ``name``) imports, anywhere in it."""
    is_package = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            # "from ukrun.kernel import caps" imports the module ukrun.kernel.caps.
            subs = {"%s.%s" % (module, a.name) for a in node.names}
            found |= (subs & set(MODULES)) or {module}
    return {m for m in found if m == "ukrun" or m.startswith("ukrun.")}


def graph():
    return {name: imported(path, name) - {name} for name, path in MODULES.items()}


def entry_of(module):
    """(row, entry) of LAYERS that holds ``module``: its longest prefix."""
    best = None
    for row, entries in enumerate(LAYERS):
        for entry in entries:
            if module == entry or module.startswith(entry + "."):
                if best is None or len(entry) > len(best[1]):
                    best = (row, entry)
    return best


def test_every_module_has_a_place_in_the_layers():
    assert sorted(m for m in MODULES if entry_of(m) is None) == []


def test_no_module_imports_a_higher_layer_or_a_sibling():
    wrong = []
    for module, targets in graph().items():
        row, entry = entry_of(module)
        for target in targets:
            if target in ("ukrun",) or entry_of(target) is None:
                continue  # the package itself: every import of a submodule runs its __init__
            target_row, target_entry = entry_of(target)
            if target_entry != entry and target_row <= row:
                wrong.append("%s -> %s" % (module, target))
    assert sorted(wrong) == []


def cycles(edges):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle():
    # Package faces are left out: importing ukrun.kernel.caps runs ukrun/kernel/__init__.py,
    # which imports nothing of ukrun (test below), and ukrun's own names load lazily.
    edges = {m: {t for t in ts if t in MODULES and t != "ukrun"} for m, ts in graph().items()}
    assert cycles(edges) == []


@pytest.mark.parametrize("package", ["ukrun.kernel", "ukrun.network", "ukrun.guest"])
def test_a_layer_package_face_imports_nothing(package):
    assert imported(MODULES[package], package) == set()


def test_the_checker_sees_a_cycle_and_a_climb():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert entry_of("ukrun.kernel.caps")[0] > entry_of("ukrun.network.wiring")[0]
    assert entry_of("ukrun.network.wiring")[0] == entry_of("ukrun.guest.elf")[0]


def test_function_local_imports_count(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from ukrun.network import wiring\n    import ukrun.cli\n")
    assert imported(str(path), "ukrun.kernel.m") == {"ukrun.network.wiring", "ukrun.cli"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_reads_in_one_sitting(module):
    with open(MODULES[module]) as f:
        assert sum(1 for _ in f) <= MAX_LINES
