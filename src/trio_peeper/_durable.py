"""DurableServer: a server whose state lives in storage, with sync policies and fencing.

A durable server is a preserving `GenServer` with a ``key``. On its first
start it claims the key through the node (one live owner per key: a fencing
token), loads what is stored (or, on first boot, takes ``initial_state``
through ``dump_state`` and ``load_state`` so both paths see the same shape),
migrates with ``load_state(old_vsn, data)``, and runs ``init(state)``.

Every commit is then synced by policy:

- ``"commit"``: before the journal commits, the change is written and made
  durable (an output gate: the reply leaves after the write). A failed write
  raises `SyncFailed` inside the transaction, so the change rolls back with
  the crash and the keeper keeps the last durable state.
- ``"interval"``: commits mark what changed; every ``sync_every`` seconds the
  changed parts are written, if any.
- ``"manual"``: only a callback returning with ``sync=True`` writes (then as
  ``"commit"``).
- every policy syncs on a graceful stop (not after ``brutal_kill``).

A write carries only the top-level keys of the state that changed (from the
journal's paths) when ``dump_state`` is not overridden and the state is a
dict; otherwise the dumped state is written whole. Writes of all durable
servers waiting at the same moment share one storage transaction (the node's
group commit).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from _fastcore import detach

from ._errors import StorageError, SyncFailed, VersionError
from ._genserver import SERVER_OPTIONS, GenServer
from ._messages import IGNORE, Init
from ._util import final
from .storage._base import WHOLE, Fenced, Write
from .storage._codec import decode_record, encode_record, part_key, part_name

if TYPE_CHECKING:
    from ._node import Node
    from ._ref import ServerRef

SYNC_POLICIES = ("commit", "interval", "manual")

_ALL: Any = ()  # a changed path covering the whole state


class DurableServer(GenServer):
    """A server whose state is kept in storage (see `open_node`, `tp.storage`).

    Class keywords: ``vsn`` (the stored shape's version, default 1),
    ``sync`` (``"commit"``, ``"interval"`` or ``"manual"``), ``sync_every``
    (seconds, for ``"interval"``), plus the `GenServer` ones. Start options:
    ``key`` (required), ``initial_state``, ``sync``, ``sync_every``.

    .. versionadded:: 0.1
    """

    vsn: ClassVar[int] = 1
    _option_defaults: ClassVar[dict[str, object]] = {
        **SERVER_OPTIONS,
        "key": None,
        "initial_state": None,
        "sync": "commit",
        "sync_every": 30.0,
    }

    def __init_subclass__(cls, *, vsn: int | None = None, **options: object) -> None:
        if vsn is not None:
            if type(vsn) is not int or vsn < 1:
                msg = f"vsn must be an int >= 1, got {vsn!r}"
                raise ValueError(msg)
            cls.vsn = vsn
        super().__init_subclass__(**options)

    def dump_state(self, state: Any) -> Any:
        """The data to store for *state* (msgpack/JSON-able); default: the state itself."""
        return state

    def load_state(self, old_vsn: int, data: Any) -> Any:
        """The state for stored *data* of version *old_vsn* (migrate here); must be pure."""
        return data

    async def init(self, state: Any) -> Any:  # type: ignore[override]
        """Runs on first start with the loaded (or initial) state; default: keep it."""
        return state


def check_durable_options(cls_name: str, options: dict[str, object]) -> None:
    """Validate ``key``, ``sync`` and ``sync_every`` where they enter."""
    key = options.get("key")
    if not isinstance(key, str) or not key:
        msg = f"{cls_name}: a durable server needs key=<non-empty str>, got {key!r}"
        raise ValueError(msg)
    if options.get("sync") not in SYNC_POLICIES:
        msg = f"sync must be 'commit', 'interval' or 'manual', got {options.get('sync')!r}"
        raise ValueError(msg)
    every = options.get("sync_every")
    if not isinstance(every, (int, float)) or isinstance(every, bool) or not 0 < every < math.inf:
        msg = f"sync_every must be a number of seconds > 0, got {every!r}"
        raise ValueError(msg)


def _overrides(server: GenServer, name: str) -> bool:
    return getattr(type(server), name) is not getattr(DurableServer, name)


@final
class Durable:
    """One durable server's link to storage: key, token, policy, what is not synced yet."""

    __slots__ = ("_timer", "dirty", "every", "fenced", "initial", "key", "node", "policy", "ref", "token", "vsn")

    def __init__(self, ref: ServerRef, cls: type[DurableServer], options: dict[str, object]) -> None:
        self.ref = ref
        self.key: str = options["key"]  # type: ignore[assignment]
        self.initial = options["initial_state"]
        self.policy: str = options["sync"]  # type: ignore[assignment]
        self.every = float(options["sync_every"])  # type: ignore[arg-type]
        self.vsn = cls.vsn
        self.node: Node | None = None
        self.token = 0
        self.dirty: set[Any] = set()  # changed top-level keys not synced yet; _ALL: everything
        self._timer = 0
        self.fenced = False  # a write was refused: a newer owner holds the key

    def __repr__(self) -> str:
        return f"<Durable {self.key!r} token={self.token} {self.policy}>"

    # ------------------------------------------------------------- boot

    async def boot(self, server: DurableServer) -> Any:
        """Claim the key (first time), load or make the state, run ``init``; returns init's result."""
        from ._node import current_node  # noqa: PLC0415

        if self.node is None:
            node = current_node()
            self.token = await node.claim(self.key, self.ref)
            self.node = node
            self.ref._add_final_hook(self._release)
        node = self.node
        assert node is not None and node.storage is not None
        self.dirty = set()  # what is loaded now is what is stored
        try:
            stored = await node.storage.load(self.key)
        except StorageError:
            raise
        except Exception as e:
            msg = f"loading key {self.key!r} failed: {e!r}"
            raise StorageError(msg) from e
        if stored is None:
            data = self._round_trip(server.dump_state(self.initial))
            state = server.load_state(self.vsn, data)
            self.dirty = {_ALL}  # first boot: make it durable at once
        else:
            if stored.vsn > self.vsn:
                msg = (
                    f"key {self.key!r} is stored with vsn {stored.vsn}, newer than"
                    f" {type(server).__qualname__}.vsn = {self.vsn}"
                )
                raise VersionError(msg)
            data = self._assemble(stored.parts)
            state = server.load_state(stored.vsn, data)
            if stored.vsn != self.vsn:
                self.dirty = {_ALL}  # migrated: store the new shape
        if not _overrides(server, "init"):
            return state
        loaded = detach(state)  # init may change the state: store what the server starts with
        result = await server.init(state)
        started = result.state if type(result) is Init else result
        if started is not IGNORE and detach(started) != loaded:
            self.dirty = {_ALL}
        return result

    def _round_trip(self, data: Any) -> Any:
        """What storing and loading *data* gives (first boot sees the loaded shape)."""
        return decode_record(encode_record(data, what=f"initial state of {self.key!r}"), key=self.key)

    def _assemble(self, parts: dict[bytes, bytes]) -> Any:
        if WHOLE in parts:
            return decode_record(parts[WHOLE], key=self.key)
        return {part_key(name): decode_record(rec, key=self.key) for name, rec in parts.items()}

    def _release(self, ref: object) -> None:
        if self.node is not None:
            self.node.release_soon(self.key, self.token)
        self._cancel_timer()

    # ------------------------------------------------------------- syncing

    def check_owner(self) -> None:
        """Before a restart serves: a fenced server lost its key and fails to start."""
        if self.fenced:
            msg = f"key {self.key!r} is owned by a newer claim; this server was fenced off"
            raise SyncFailed(msg)

    def mark(self, changes: list[tuple[Any, ...]]) -> None:
        """Remember what a commit changed (top-level keys; () = everything)."""
        dirty = self.dirty
        for path in changes:
            dirty.add(path[0] if path else _ALL)
        if self.policy == "interval" and dirty and not self._timer:
            from ._ref import _SyncTimer  # noqa: PLC0415

            timers = self.ref._timers
            self._timer = timers.add(timers.now() + self.every, _SyncTimer(self.ref))

    def _cancel_timer(self) -> None:
        if self._timer:
            self.ref._timers.cancel(self._timer)
            self._timer = 0

    def build(self, server: GenServer, state: Any) -> Write:
        """The write of what is dirty in *state* (whole when it must be)."""
        dirty = self.dirty
        whole = _ALL in dirty or type(state) is not dict and not isinstance(state, dict)
        if whole or _overrides(server, "dump_state"):
            data = server.dump_state(detach(state))  # type: ignore[attr-defined]
            if isinstance(data, dict) and all(type(k) in (str, int) for k in data):
                parts = {part_name(k): encode_record(v, what=f"{self.key!r}[{k!r}]") for k, v in data.items()}
            else:
                parts = {WHOLE: encode_record(data, what=f"state of {self.key!r}")}
            return Write(self.key, self.token, self.vsn, parts, replace=True)
        set_parts: dict[bytes, bytes] = {}
        delete_parts: list[bytes] = []
        for k in dirty:
            if type(k) not in (str, int):
                return self._whole(server, state)
            if k in state:
                set_parts[part_name(k)] = encode_record(detach(state[k]), what=f"{self.key!r}[{k!r}]")
            else:
                delete_parts.append(part_name(k))
        return Write(self.key, self.token, self.vsn, set_parts, delete_parts)

    def _whole(self, server: GenServer, state: Any) -> Write:
        self.dirty = {_ALL}
        return self.build(server, state)

    async def sync(self, server: GenServer, state: Any) -> None:
        """Make what is dirty durable now; `SyncFailed` (nothing acknowledged) if it cannot."""
        if not self.dirty:
            return
        node = self.node
        assert node is not None
        self._cancel_timer()
        write = self.build(server, state)  # StorageError: state not encodable
        result = await node.write(write)
        if result is not None:
            if isinstance(result, Fenced):
                self.fenced = True  # it lost the key: it must never serve it again
            msg = f"sync of {self.key!r} failed: {result}"
            raise SyncFailed(msg) from result
        self.dirty = set()
