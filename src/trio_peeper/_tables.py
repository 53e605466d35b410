"""ETS-like tables: ownership, access, heir, over `_fastcore.TableCore`.

A table belongs to its owner: the server (its `ServerRef`, so ownership spans
restarts: with ``keep_tables=True`` a crash hands nothing over and copies
nothing) or, outside any server, the task that made it. Contents are not
transactional, as ETS tables are not: a crashed callback's table writes stay.

Speed: each operation is an instance attribute bound once per table to the
right callable: the core's own bound C method where the access mode needs no
check (reads of public and protected tables, writes of public ones), an
owner-checking wrapper where it does, and a raising stub once the table is
deleted. So ``t.lookup(k)`` is a single C call, with no Python frame.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any, NoReturn

import trio

import _fastcore

from ._errors import AccessError, TableDeleted
from ._messages import TableTransfer
from ._ref import _INFO, STOPPED, ServerRef, _current_server
from ._runtime import current_runtime
from ._util import final

_READS = ("lookup", "getitem", "contains", "lookup_all", "select", "keys", "items", "first", "last", "next", "prev", "range")
_WRITES = ("insert", "insert_many", "insert_new", "delete", "delete_object", "take", "update_counter", "clear")
_ACCESS = ("public", "protected", "private")


def _caller() -> Any:
    """Who is asking: the current server's ref, or the current task outside a server."""
    ref = _current_server.get()
    return ref if ref is not None else trio.lowlevel.current_task()


@final
class Table:
    """An ETS-like table owned by the current server (or task). See API.md section 7.

    ``kind``: ``"set"``, ``"ordered_set"``, ``"bag"`` or ``"duplicate_bag"``;
    ``access``: ``"public"`` (anyone reads and writes), ``"protected"`` (anyone
    reads, the owner writes) or ``"private"`` (the owner only); a violation
    raises `AccessError`. ``name`` makes it findable with `whereis_table`.
    ``heir`` (a `ServerRef`) inherits it when the owner stops for good.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "__weakref__",
        "_access",
        "_core",
        "_deleted",
        "_heir",
        "_heir_data",
        "_len",
        "_name",
        "_owner",
        "_rt",
        "clear",
        "contains",
        "delete",
        "delete_object",
        "first",
        "getitem",
        "insert",
        "insert_many",
        "insert_new",
        "items",
        "keys",
        "last",
        "lookup",
        "lookup_all",
        "next",
        "prev",
        "range",
        "select",
        "take",
        "update_counter",
    )

    # the operations, bound per instance (see the module docstring)
    lookup: Callable[..., Any]
    getitem: Callable[[Any], Any]
    contains: Callable[[Any], bool]
    lookup_all: Callable[[Any], list[Any]]
    select: Callable[..., list[tuple[Any, Any]]]
    keys: Callable[[], list[Any]]
    items: Callable[[], list[tuple[Any, Any]]]
    first: Callable[[], Any]
    last: Callable[[], Any]
    next: Callable[[Any], Any]
    prev: Callable[[Any], Any]
    range: Callable[[Any, Any], list[tuple[Any, Any]]]
    insert: Callable[[Any, Any], None]
    insert_many: Callable[[Any], None]
    insert_new: Callable[[Any, Any], bool]
    delete: Callable[[Any], None]
    delete_object: Callable[[Any, Any], None]
    take: Callable[[Any], list[Any]]
    update_counter: Callable[..., int]
    clear: Callable[[], None]

    def __init__(
        self,
        kind: str = "set",
        *,
        name: Hashable | None = None,
        access: str = "protected",
        heir: ServerRef | None = None,
    ) -> None:
        if access not in _ACCESS:
            msg = f"access must be 'public', 'protected' or 'private', got {access!r}"
            raise ValueError(msg)
        _check_heir(heir)
        core = _fastcore.TableCore(kind)  # ValueError for a bad kind
        rt = current_runtime()
        if name is not None:
            try:
                taken = name in rt.tables
            except TypeError:
                msg = f"a table name must be hashable, got {name!r}"
                raise TypeError(msg) from None
            if taken:
                msg = f"a table named {name!r} already exists"
                raise ValueError(msg)
        self._core = core
        self._rt = rt
        self._access = access
        self._name = name
        self._heir = heir
        self._heir_data: object = None
        self._deleted = False
        self._owner = _caller()
        if name is not None:
            rt.tables[name] = self
        if isinstance(self._owner, ServerRef):
            self._owner._own_table(self)
        self._bind()

    # ----------------------------------------------------------- binding

    def _bind(self) -> None:
        core = self._core
        check_reads = self._access == "private"
        check_writes = self._access != "public"
        # a server owner's writes are checked inside the compiled core (one C call):
        # the current server context variable must hold the owner's ref
        in_core = check_writes and isinstance(self._owner, ServerRef)
        if in_core:
            core.set_write_guard(_current_server, self._owner, self._refuse)
        else:
            core.set_write_guard(None, None, None)
        for op in _READS:
            fn = getattr(core, op)
            object.__setattr__(self, op, self._guard(op, fn) if check_reads else fn)
        for op in _WRITES:
            fn = getattr(core, op)
            object.__setattr__(self, op, self._guard(op, fn) if check_writes and not in_core else fn)
        length = core.__len__
        object.__setattr__(self, "_len", self._guard("len", length) if check_reads else length)

    def _guard(self, op: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        current = _current_server.get  # bound once: one C call per checked operation
        task = trio.lowlevel.current_task

        def guarded(*args: Any, **kwargs: Any) -> Any:
            caller = current()
            if caller is None:
                caller = task()
            if caller is not self._owner:
                self._refuse(op)
            return fn(*args, **kwargs)

        guarded.__name__ = op
        return guarded

    def _refuse(self, op: str) -> NoReturn:
        who = "use" if self._access == "private" else "write to"
        msg = f"{self._access} table {self._label()}: {op} by {_caller()!r} refused; only its owner {self._owner!r} may {who} it"
        raise AccessError(msg)

    def _label(self) -> str:
        return repr(self._name) if self._name is not None else f"at {id(self):#x}"

    def _gone(self, *args: Any, **kwargs: Any) -> NoReturn:
        msg = f"table {self._label()} was deleted"
        raise TableDeleted(msg)

    def _check_owner(self, op: str) -> None:
        if self._deleted:
            self._gone()
        if _caller() is not self._owner:
            msg = f"table {self._label()}: only its owner {self._owner!r} may {op}, not {_caller()!r}"
            raise AccessError(msg)

    # ----------------------------------------------------------- mapping

    def __getitem__(self, key: Any) -> Any:
        return self.getitem(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        if self._core.kind in ("bag", "duplicate_bag"):
            msg = f"t[k] = v is for set and ordered_set tables; use insert() on a {self._core.kind}"
            raise TypeError(msg)
        self.insert(key, value)

    def __delitem__(self, key: Any) -> None:
        if self._deleted:
            self._gone()
        if self._access != "public" and _caller() is not self._owner:
            self._refuse("delete")  # a write, even of a missing key
        if not self.contains(key):
            raise KeyError(key)
        self.delete(key)

    def __contains__(self, key: Any) -> bool:
        return self.contains(key)

    def __len__(self) -> int:
        n: int = self._len()
        return n

    def __iter__(self) -> Iterator[Any]:
        """The keys (in key order for an ordered_set), over a snapshot."""
        return iter(self.keys())

    def __repr__(self) -> str:
        state = " deleted" if self._deleted else f" size={len(self._core)}"
        return f"<Table {self._label()} {self._core.kind} {self._access}{state}>"

    # ----------------------------------------------------------- ownership

    @property
    def kind(self) -> str:
        """``"set"``, ``"ordered_set"``, ``"bag"`` or ``"duplicate_bag"``."""
        return str(self._core.kind)

    @property
    def name(self) -> Hashable | None:
        """The table's name, or None."""
        return self._name

    @property
    def owner(self) -> Any:
        """The owning `ServerRef` (or task, for a table made outside a server)."""
        return self._owner

    @property
    def heir(self) -> ServerRef | None:
        """Who inherits the table when its owner stops for good, or None."""
        return self._heir

    def info(self) -> dict[str, Any]:
        """A dict: kind, name, size, access, owner, heir."""
        if self._deleted:
            self._gone()
        return {
            "kind": self.kind,
            "name": self._name,
            "size": self.__len__(),
            "access": self._access,
            "owner": self._owner,
            "heir": self._heir,
        }

    def give_away(self, ref: ServerRef, gift: object = None) -> None:
        """Make *ref* the owner; it gets ``handle_info(tp.TableTransfer(table, from_ref, gift))``.

        Plain function; only the owner may give a table away.
        """
        self._check_owner("give it away")
        if not isinstance(ref, ServerRef) or ref._status is STOPPED:
            msg = f"give_away() needs a running tp.ServerRef, got {ref!r}"
            raise ValueError(msg)
        if ref is self._owner:
            msg = f"{ref!r} already owns table {self._label()}"
            raise ValueError(msg)
        self._move_to(ref, gift)

    def set_heir(self, ref: ServerRef | None, data: object = None) -> None:
        """Name who inherits the table (with *data*) when its owner stops; None for nobody."""
        self._check_owner("set its heir")
        _check_heir(ref)
        self._heir, self._heir_data = ref, data

    def delete_table(self) -> None:
        """Delete the table now (writers only); every later use raises `TableDeleted`."""
        if self._deleted:
            self._gone()
        if self._access != "public" and _caller() is not self._owner:
            self._refuse("delete_table")
        self._delete()

    # ----------------------------------------------------------- internals

    def _move_to(self, ref: ServerRef, data: object) -> None:
        old = self._owner
        if isinstance(old, ServerRef):
            old._disown_table(self)
        self._owner = ref
        ref._own_table(self)
        self._bind()  # the write guard follows the owner
        ref._post(_INFO, TableTransfer(self, old if isinstance(old, ServerRef) else None, data))

    def _owner_lost(self, ref: ServerRef) -> None:
        """The owner stopped for good (or crashed, with ``keep_tables=False``)."""
        heir = self._heir
        if heir is not None and heir is not ref and heir._status is not STOPPED:
            self._heir = None  # an heir inherits once, as in ETS
            self._move_to(heir, self._heir_data)
        else:
            self._delete()

    def _delete(self) -> None:
        self._deleted = True
        owner = self._owner
        if isinstance(owner, ServerRef):
            owner._disown_table(self)
        if self._name is not None and self._rt.tables.get(self._name) is self:
            del self._rt.tables[self._name]
        gone = self._gone
        for op in (*_READS, *_WRITES, "_len"):
            object.__setattr__(self, op, gone)
        self._core = _fastcore.TableCore(self._core.kind)  # free the contents now


def _check_heir(heir: object) -> None:
    if heir is not None and not isinstance(heir, ServerRef):
        msg = f"heir must be a tp.ServerRef or None, got {heir!r}"
        raise TypeError(msg)


def whereis_table(name: Hashable) -> Table | None:
    """The table named *name* in this run, or None."""
    table = current_runtime().tables.get(name)
    return table if isinstance(table, Table) else None
