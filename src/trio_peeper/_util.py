"""Small helpers shared by the modules: frozen slotted records, final classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")


def final(cls: type[T]) -> type[T]:
    """Forbid subclassing *cls* (a runtime twin of ``typing.final``)."""

    def __init_subclass__(cls_: type, **kwargs: object) -> NoReturn:
        msg = f"{cls.__qualname__} is final and cannot be subclassed"
        raise TypeError(msg)

    cls.__init_subclass__ = classmethod(__init_subclass__)  # type: ignore[assignment]
    return cls


def frozen_setattr(self: object, name: str, value: object) -> NoReturn:
    """``__setattr__`` of frozen records."""
    msg = f"{type(self).__name__} is frozen: cannot assign {name!r}"
    raise AttributeError(msg)


def frozen_delattr(self: object, name: str) -> NoReturn:
    """``__delattr__`` of frozen records."""
    msg = f"{type(self).__name__} is frozen: cannot delete {name!r}"
    raise AttributeError(msg)


def slot_setters(base: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The raw slot ``__set__`` of *names* on *base*, to fill a frozen record fast."""
    return tuple(getattr(base, name).__set__ for name in names)


def record(name: str, fields: tuple[str, ...], doc: str, module: str) -> type:
    """A frozen, slotted record with positional/keyword construction, ``==``, hash and repr."""
    base = type("_" + name + "Slots", (), {"__slots__": fields})
    setters = slot_setters(base, *fields)
    n = len(fields)

    def __init__(self: object, *args: object, **kwargs: object) -> None:
        if len(args) > n:
            msg = f"{name} takes {n} fields, got {len(args)}"
            raise TypeError(msg)
        values = dict(zip(fields, args))
        for key, value in kwargs.items():
            if key not in fields or key in values:
                msg = f"{name} got an unexpected or repeated field {key!r}"
                raise TypeError(msg)
            values[key] = value
        if len(values) != n:
            missing = [f for f in fields if f not in values]
            msg = f"{name} is missing fields {missing!r}"
            raise TypeError(msg)
        for setter, field in zip(setters, fields):
            setter(self, values[field])

    def astuple(self: object) -> tuple[object, ...]:
        return tuple(getattr(self, f) for f in fields)

    def __eq__(self: object, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return astuple(self) == astuple(other)

    def __hash__(self: object) -> int:
        return hash((name, *astuple(self)))

    def __repr__(self: object) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in fields)
        return f"{name}({inner})"

    def __reduce__(self: object) -> tuple[object, ...]:
        return type(self), astuple(self)

    ns = {
        "__slots__": (),
        "__doc__": doc,
        "__module__": module,
        "__init__": __init__,
        "__eq__": __eq__,
        "__hash__": __hash__,
        "__repr__": __repr__,
        "__reduce__": __reduce__,
        "__setattr__": frozen_setattr,
        "__delattr__": frozen_delattr,
        "__match_args__": fields,
        "_fields": fields,
    }
    return final(type(name, (base,), ns))
