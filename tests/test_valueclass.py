"""ukrun.valueclass: the dataclass subset ukrun uses, checked against dataclasses itself."""
import dataclasses
import os
import subprocess

import pytest

from pythons import claimed_pythons, interpreter
from ukrun.valueclass import FrozenInstanceError, fields, fresh, is_value, value_class


@value_class(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: list = fresh(list)


@value_class
class Mutable:
    name: str
    seen: dict = fresh(dict)

    def __post_init__(self):
        self.seen["post_init"] = True


@value_class(frozen=True)
class Point3(Point):
    z: int = 0


@dataclasses.dataclass(frozen=True)
class DataPoint:
    x: int
    y: int = 0
    tags: list = dataclasses.field(default_factory=list)


def test_fields_in_order_with_bases_first():
    assert fields(Point) == ("x", "y", "tags")
    assert fields(Point3(1)) == ("x", "y", "tags", "z")


@pytest.mark.parametrize("args,kwargs", [((1,), {}), ((1, 2), {}), ((), {"x": 1, "y": 5}),
                                         ((3,), {"tags": ["a"]}), ((1, 2, [3]), {})])
def test_init_and_repr_as_a_dataclass_would(args, kwargs):
    ours, theirs = Point(*args, **kwargs), DataPoint(*args, **kwargs)
    assert (ours.x, ours.y, ours.tags) == (theirs.x, theirs.y, theirs.tags)
    assert repr(ours) == repr(theirs).replace("DataPoint", "Point")


def test_fresh_default_is_new_for_each_instance():
    a, b = Point(1), Point(1)
    a.tags.append("x")
    assert b.tags == [] and a.tags == ["x"]


@pytest.mark.parametrize("args,kwargs,needle", [
    ((), {}, "missing argument 'x'"),
    ((1, 2, 3, 4), {}, "takes 3 arguments, 4 given"),
    ((1,), {"x": 2}, "repeated argument 'x'"),
    ((1,), {"w": 2}, "unexpected argument 'w'"),
])
def test_bad_arguments_raise_type_error(args, kwargs, needle):
    with pytest.raises(TypeError, match=needle):
        Point(*args, **kwargs)


def test_equality_needs_the_same_class_and_values():
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(1, 3)
    assert Point(1) != Point3(1)  # a subclass is another kind of value, as with dataclasses
    assert Point(1) != (1, 0, [])


def test_frozen_is_immutable_and_hashable():
    p = Point(1, 2, ())
    with pytest.raises(FrozenInstanceError):
        p.x = 5
    with pytest.raises(AttributeError):
        del p.y
    assert hash(p) == hash(Point(1, 2, ()))
    assert {p: "here"}[Point(1, 2, ())] == "here"


def test_mutable_is_unhashable_and_runs_post_init():
    m = Mutable("a")
    assert m.seen == {"post_init": True}
    m.name = "b"
    assert m == Mutable("b")
    with pytest.raises(TypeError):
        hash(m)


def test_is_value():
    assert is_value(Point(1)) and is_value(Mutable("a"))
    assert not is_value(Point) and not is_value((1, 2)) and not is_value(DataPoint(1))


# --- every Python the package claims ---------------------------------------------------------
#
# valueclass reads each class's own annotations, and where Python keeps them changed in 3.14
# (PEP 649/749: an annotate function instead of an __annotations__ dict, unless the module has
# `from __future__ import annotations`). So the module itself runs under each claimed
# interpreter: it imports nothing of ukrun, so it loads from its file without the compiled core.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALUECLASS = os.path.join(ROOT, "ukrun", "valueclass.py")
FIRST_DEFERRED = (3, 14)  # PEP 649: annotations evaluated lazily, through __annotate__

CHECKS = r'''
from __future__ import annotations  # as in every ukrun module

import importlib.util
import sys
import types

spec = importlib.util.spec_from_file_location("valueclass", sys.argv[1])
vc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vc)
had_annotationlib = "annotationlib" in sys.modules


@vc.value_class(frozen=True)
class Point:
    x: int
    y: Later = 0              # a name defined only below: never evaluated
    tags: list = vc.fresh(list)


@vc.value_class(frozen=True)
class Point3(Point):
    z: int = 0


@vc.value_class
class Empty(Point3):
    pass


class Later:
    pass


assert vc.fields(Point) == ("x", "y", "tags") and vc.fields(Point3(1)) == ("x", "y", "tags", "z")
assert vc.fields(Empty) == vc.fields(Point3)
p = Point(1, tags=["a"])
assert (p.x, p.y, p.tags, repr(p)) == (1, 0, ["a"], "Point(x=1, y=0, tags=['a'])")
assert Point(1).tags is not Point(1).tags and Point(1) == Point(1) and Point(1) != Point3(1)
assert hash(Point(1, 2, ())) == hash(Point(1, 2, ()))
try:
    p.x = 2
except vc.FrozenInstanceError:
    pass
else:
    raise AssertionError("a frozen value class took an assignment")
# The dict the class body leaves is all it takes: annotationlib is for the deferred case.
assert ("annotationlib" in sys.modules) == had_annotationlib

# The same classes with the interpreter's own semantics (no future import): eager up to 3.13,
# deferred from 3.14 on, where an annotation may then name what does not exist yet.
stock = {"vc": vc}
exec(compile("""
class Defined:
    pass
@vc.value_class
class Stock:
    a: int
    b: %s = 2
""" % ("NotYet" if sys.version_info >= (3, 14) else "Defined"), "<stock>", "exec",
             dont_inherit=True), stock)
assert vc.fields(stock["Stock"]) == ("a", "b") and stock["Stock"](1).b == 2

# A class namespace as 3.14 builds it: no __annotations__, an annotate function instead.
# Before 3.14 there is no annotationlib; a stand-in does what 3.14's does with a class.
asked = []
if sys.version_info < (3, 14):
    lib = types.ModuleType("annotationlib")
    lib.Format = types.SimpleNamespace(VALUE=1, FORWARDREF=2)

    def get_annotations(obj, *, format):
        asked.append(format)
        return obj.__annotate__(format)

    lib.get_annotations = get_annotations
    sys.modules["annotationlib"] = lib


def annotate(format):
    if format not in (1, 2):  # VALUE, FORWARDREF; what an annotate function may refuse
        raise NotImplementedError
    return {"c": int, "d": str}


Lazy = vc.value_class(type("Lazy", (Point,), {"__annotate__": annotate, "d": "dee"}))
assert vc.fields(Lazy) == ("x", "y", "tags", "c", "d"), vc.fields(Lazy)
assert repr(Lazy(1, 2, [], 3)) == "Lazy(x=1, y=2, tags=[], c=3, d='dee')"
assert asked == ([2] if sys.version_info < (3, 14) else []), asked
print("%d.%d" % sys.version_info[:2])
'''


def test_the_claims_are_one_range_from_python_requires():
    versions, lowest = claimed_pythons()
    assert versions and versions[0] == lowest
    minors = [int(v.split(".")[1]) for v in versions]
    assert minors == list(range(minors[0], minors[-1] + 1))


def check_under(version):
    python = interpreter(version)
    if python is None:
        pytest.skip("no Python %s on this machine" % version)
    proc = subprocess.run([python, "-I", "-c", CHECKS, VALUECLASS], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [version]


@pytest.mark.parametrize("version", claimed_pythons()[0])
def test_value_classes_under_every_claimed_python(version):
    check_under(version)


def test_value_classes_under_deferred_annotations():
    # The real PEP 649 path (the class namespace without __annotations__) is simulated above
    # on every older Python; this runs it for real where 3.14 is installed.
    check_under("%d.%d" % FIRST_DEFERRED)
