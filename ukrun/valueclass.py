"""Value classes declared like dataclasses, without the code generation that makes them slow.

``dataclasses`` writes and compiles an ``__init__``, ``__repr__``, ``__eq__`` (and for frozen
classes ``__setattr__`` and ``__hash__``) for every class, each time its module is imported:
about 0.5 ms a class, plus ~5 ms to import ``dataclasses`` itself (it pulls in ``inspect``).
ukrun declares some twenty such classes on the way to exec, so that was most of its own start-up
time. Here every class shares one set of generic methods instead, and costs what its ``class``
statement costs.

    @value_class(frozen=True)
    class Point:
        x: int
        y: int = 0
        tags: list = fresh(list)   # a new list for each instance (dataclasses' default_factory)

Fields are the class's annotated names, in order, after those of value-class bases; a default
is the class attribute of that name. ``__post_init__`` runs after ``__init__`` if defined.
``fields(obj)`` lists the field names; ``is_value(obj)`` tells a value-class instance.
Equality, like a dataclass's, needs the same class.
"""
from __future__ import annotations


class FrozenInstanceError(AttributeError):
    """Raised on assigning to or deleting a field of a frozen value class."""


class fresh:
    """A default made anew for each instance: ``fresh(list)``, ``fresh(dict)``."""

    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


_NO_DEFAULT = object()


def fields(obj_or_class) -> tuple:
    """The field names of a value class (or of an instance of one), in order."""
    return obj_or_class._fields


def is_value(obj) -> bool:
    """Whether ``obj`` is an instance of a value class."""
    return isinstance(getattr(type(obj), "_defaults", None), dict)


def _init(self, *args, **kwargs):
    names = self._fields
    if len(args) > len(names):
        raise TypeError("%s takes %d arguments, %d given"
                        % (type(self).__name__, len(names), len(args)))
    values = dict(zip(names, args))
    if len(args) < len(names) or kwargs:
        defaults = self._defaults
        for name in names[len(args):]:
            if name in kwargs:
                value = kwargs.pop(name)
            else:
                value = defaults.get(name, _NO_DEFAULT)
                if value is _NO_DEFAULT:
                    raise TypeError("%s missing argument %r" % (type(self).__name__, name))
                if type(value) is fresh:
                    value = value.make()
            values[name] = value
        if kwargs:
            name = next(iter(kwargs))
            raise TypeError("%s got %s argument %r" % (
                type(self).__name__, "a repeated" if name in names else "an unexpected", name))
    # One update rather than a __setattr__ per field (a frozen class refuses that one): netlink
    # replies make a hundred values a run.
    self.__dict__.update(values)
    post_init = getattr(self, "__post_init__", None)
    if post_init is not None:
        post_init()


def _values(self) -> tuple:
    return tuple(getattr(self, name) for name in self._fields)


def _repr(self) -> str:
    return "%s(%s)" % (type(self).__qualname__,
                       ", ".join("%s=%r" % (name, getattr(self, name)) for name in self._fields))


def _eq(self, other):
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self) -> int:
    return hash(_values(self))


def _frozen_setattr(self, name, value):
    raise FrozenInstanceError("cannot assign to field %r of a frozen %s"
                              % (name, type(self).__name__))


def _frozen_delattr(self, name):
    raise FrozenInstanceError("cannot delete field %r of a frozen %s"
                              % (name, type(self).__name__))


def _own_annotation_names(cls):
    """The names ``cls`` itself annotates (not its bases), in the order written."""
    # Up to Python 3.13, and on 3.14 under ``from __future__ import annotations`` (every ukrun
    # module), the class body leaves its annotations as a dict in the class namespace: the
    # cheap path, and on 3.9 the only one (there cls.__annotations__ may be a base's).
    annotations = vars(cls).get("__annotations__")
    if annotations is None and getattr(cls, "__annotate__", None) is not None:
        # Python 3.14+ without that import (PEP 649/749): the namespace holds an annotate
        # function instead. FORWARDREF reads it without evaluating names defined later
        # (which would raise NameError); annotationlib is imported only here, off ukrun's path.
        import annotationlib

        annotations = annotationlib.get_annotations(cls, format=annotationlib.Format.FORWARDREF)
    return annotations or ()


def value_class(cls=None, *, frozen: bool = False):
    """Give ``cls`` an ``__init__`` over its annotated fields, ``__repr__``, ``__eq__`` and,
    when ``frozen``, immutability and ``__hash__`` (else it is unhashable, as a dataclass)."""

    def make(cls):
        names, defaults = [], {}
        for base in reversed(cls.__mro__[1:]):
            for name in getattr(base, "_fields", ()) if "_defaults" in vars(base) else ():
                if name not in names:
                    names.append(name)
            defaults.update(vars(base).get("_defaults", {}))
        for name in _own_annotation_names(cls):
            if name not in names:
                names.append(name)
            if name in vars(cls):
                defaults[name] = vars(cls)[name]
        cls._fields, cls._defaults = tuple(names), defaults
        cls.__init__, cls.__repr__, cls.__eq__ = _init, _repr, _eq
        if frozen:
            cls.__setattr__, cls.__delattr__, cls.__hash__ = (_frozen_setattr, _frozen_delattr,
                                                              _hash)
        else:
            cls.__hash__ = None
        return cls

    return make if cls is None else make(cls)
