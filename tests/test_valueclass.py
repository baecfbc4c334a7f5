"""ukrun.valueclass: the dataclass subset ukrun uses, checked against dataclasses itself."""
import dataclasses

import pytest

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
