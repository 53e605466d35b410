"""`_fastcore` cow: transactional state trees, on both twins.

Properties (STYLE S8.1): for random states and random edit scripts,
``apply(diff, old) == new`` after a commit; after a rollback the state equals
the old one and every container is the very object it was; changes outside a
transaction are refused and change nothing; hostile keys change nothing.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import pytest
from _twins import twin_fixture, twins
from hypothesis import given, settings
from hypothesis import strategies as st

cow = twin_fixture("cow")

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.text("ab", max_size=2), st.floats(allow_nan=False)
)
KEYS = st.one_of(st.integers(0, 6), st.sampled_from(["a", "b", "c", "d"]))


def values(leaf: st.SearchStrategy[Any] = SCALARS) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.dictionaries(KEYS, inner, max_size=4),
            st.lists(inner, max_size=4),
            st.sets(st.integers(0, 9), max_size=4),
            st.tuples(inner, inner),
        ),
        max_leaves=12,
    )


STATES = st.dictionaries(KEYS, values(), max_size=5)


def containers(node: Any, out: list[Any]) -> list[Any]:
    """Every container reachable from *node*, depth first."""
    if isinstance(node, dict):
        out.append(node)
        for v in dict.values(node):
            containers(v, out)
    elif isinstance(node, list):
        out.append(node)
        for v in node:
            containers(v, out)
    elif isinstance(node, set):
        out.append(node)
    elif isinstance(node, tuple):
        for v in node:
            containers(v, out)
    return out


def edit(data: st.DataObject, root: Any, steps: int) -> None:
    """Apply *steps* random in-place changes somewhere in the tree (errors are part of the game)."""
    for _ in range(steps):
        pool = containers(root, [])
        target = data.draw(st.sampled_from(pool), label="target")
        try:
            if isinstance(target, dict):
                op = data.draw(
                    st.sampled_from(["set", "del", "pop", "setdefault", "update", "clear", "popitem", "ior"]),
                    label="dict op",
                )
                key = data.draw(KEYS, label="key")
                if op == "set":
                    target[key] = data.draw(values(), label="value")
                elif op == "del":
                    del target[key]
                elif op == "pop":
                    target.pop(key, None)
                elif op == "setdefault":
                    target.setdefault(key, data.draw(values(), label="value"))
                elif op == "update":
                    target.update({key: data.draw(values(), label="value")})
                elif op == "clear":
                    target.clear()
                elif op == "popitem":
                    target.popitem()
                else:
                    target |= {key: data.draw(values(), label="value")}
            elif isinstance(target, list):
                op = data.draw(
                    st.sampled_from(
                        ["append", "extend", "insert", "pop", "remove", "setitem", "delitem", "reverse", "clear", "iadd", "slice"]
                    ),
                    label="list op",
                )
                if op == "append":
                    target.append(data.draw(values(), label="value"))
                elif op == "extend":
                    target.extend(data.draw(st.lists(values(), max_size=2), label="values"))
                elif op == "insert":
                    target.insert(data.draw(st.integers(-3, 3)), data.draw(values(), label="value"))
                elif op == "pop":
                    target.pop()
                elif op == "remove":
                    target.remove(data.draw(SCALARS, label="value"))
                elif op == "setitem":
                    target[data.draw(st.integers(-3, 3))] = data.draw(values(), label="value")
                elif op == "delitem":
                    del target[data.draw(st.integers(-3, 3))]
                elif op == "reverse":
                    target.reverse()
                elif op == "clear":
                    target.clear()
                elif op == "iadd":
                    target += [data.draw(values(), label="value")]
                else:
                    target[0:1] = [data.draw(values(), label="value")]
            else:
                op = data.draw(st.sampled_from(["add", "discard", "remove", "pop", "clear", "ior", "isub"]), label="set op")
                n = data.draw(st.integers(0, 9), label="n")
                if op == "add":
                    target.add(n)
                elif op == "discard":
                    target.discard(n)
                elif op == "remove":
                    target.remove(n)
                elif op == "pop":
                    target.pop()
                elif op == "clear":
                    target.clear()
                elif op == "ior":
                    target |= {n}
                else:
                    target -= {n}
        except (KeyError, IndexError, ValueError):
            pass


@settings(deadline=None, max_examples=150)
@given(state=STATES, data=st.data())
def test_a_committed_diff_replays_on_the_old_state(cow: ModuleType, state: dict[Any, Any], data: st.DataObject) -> None:
    j = cow.Journal("test")
    root = j.adopt_root(state)
    assert cow.detach(root) == state
    old = cow.detach(root)
    j.begin()
    edit(data, root, data.draw(st.integers(1, 6), label="steps"))
    j.commit()
    new = cow.detach(root)
    assert new == cow.apply(j.diff(), old)
    changed_roots = {p[0] for p in j.changes() if p}
    for key in set(old) | set(new):  # keys not reported did not change
        if key not in changed_roots and () not in j.changes():
            assert old.get(key, cow.DELETED) == new.get(key, cow.DELETED)


@settings(deadline=None, max_examples=150)
@given(state=STATES, data=st.data())
def test_a_rollback_restores_every_container_identically(cow: ModuleType, state: dict[Any, Any], data: st.DataObject) -> None:
    j = cow.Journal("test")
    root = j.adopt_root(state)
    old = cow.detach(root)
    before = containers(root, [])
    j.begin()
    edit(data, root, data.draw(st.integers(1, 6), label="steps"))
    j.rollback()
    assert cow.detach(root) == old
    after = containers(root, [])
    # the very same objects (a key deleted and restored moves to the end of its dict,
    # so the walk order may differ; see "what survives a crash")
    assert sorted(map(id, after)) == sorted(map(id, before))


@settings(deadline=None, max_examples=60)
@given(state=STATES, data=st.data())
def test_commits_then_a_rollback_keep_the_last_commit(cow: ModuleType, state: dict[Any, Any], data: st.DataObject) -> None:
    j = cow.Journal("test")
    root = j.adopt_root(state)
    for _ in range(data.draw(st.integers(1, 3), label="commits")):
        j.begin()
        edit(data, root, 2)
        j.commit()
    committed = cow.detach(root)
    j.begin()
    edit(data, root, 3)
    j.rollback()
    assert cow.detach(root) == committed


def test_changes_outside_a_transaction_are_refused(cow: ModuleType) -> None:
    j = cow.Journal("srv")
    root = j.adopt_root({"items": [1], "tags": {1}, "sub": {"x": 1}})
    message = r"^the state of 'srv' was changed outside its callbacks; change it only in the server's own callbacks$"
    for change in (
        lambda: root.__setitem__("k", 1),
        lambda: root["items"].append(2),
        lambda: root["tags"].add(2),
        lambda: root["sub"].pop("x"),
        lambda: root.clear(),
    ):
        with pytest.raises(RuntimeError, match=message):
            change()
    assert cow.detach(root) == {"items": [1], "tags": {1}, "sub": {"x": 1}}


def test_the_state_has_value_semantics(cow: ModuleType) -> None:
    shared = [1, 2]
    j = cow.Journal("srv")
    root = j.adopt_root({"a": shared})
    assert root["a"] == shared and root["a"] is not shared  # adopted: a tracked copy
    j.begin()
    root["b"] = root["a"]  # an alias inside the tree is stored as a copy
    root["b"].append(3)
    j.commit()
    assert cow.detach(root) == {"a": [1, 2], "b": [1, 2, 3]}
    assert shared == [1, 2]


def test_objects_other_than_plain_containers_are_kept_by_reference(cow: ModuleType) -> None:
    class Log(list):  # type: ignore[type-arg]
        pass

    log, marker = Log(), object()
    j = cow.Journal("srv")
    root = j.adopt_root({"log": log, "ref": marker, "t": (1, "x")})
    assert root["log"] is log and root["ref"] is marker
    log.append("outside a transaction is fine: not part of the value")
    assert cow.is_tracked(root) and not cow.is_tracked(log)


def test_mutable_dataclasses_are_tracked_field_by_field(cow: ModuleType) -> None:
    @dataclasses.dataclass
    class Account:
        balance: int
        history: list[int]

    j = cow.Journal("srv")
    root = j.adopt_root({"acct": Account(10, [10])})
    acct = root["acct"]
    j.begin()
    acct.balance = 99
    acct.history.append(89)
    j.rollback()
    assert (acct.balance, list(acct.history)) == (10, [10])
    j.begin()
    acct.balance = 20
    acct.history = [10, 20]  # a new plain list in a field: tracked from the commit on
    j.commit()
    assert cow.is_tracked(acct.history)
    assert cow.detach(root) == {"acct": Account(20, [10, 20])}


def test_replacing_the_root_reports_the_whole_state(cow: ModuleType) -> None:
    j = cow.Journal("srv")
    j.adopt_root({"a": 1})
    j.begin()
    root = j.adopt_root({"b": [2]})
    j.commit()
    assert j.changes() == [()]
    assert cow.apply(j.diff(), {"a": 1}) == {"b": [2]}
    assert cow.is_tracked(root["b"])


class Hostile:
    def __init__(self, fail: str) -> None:
        self.fail = fail

    def __hash__(self) -> int:
        if self.fail == "hash":
            raise ArithmeticError("hash")
        return 1

    def __eq__(self, other: object) -> bool:
        if self.fail == "eq":
            raise ArithmeticError("eq")
        return self is other


@pytest.mark.parametrize("fail", ["hash", "eq"])
def test_hostile_keys_change_nothing(cow: ModuleType, fail: str) -> None:
    stored = Hostile("never")
    j = cow.Journal("srv")
    root = j.adopt_root({stored: 1, "x": [1]})
    old = cow.detach(root)
    if fail == "eq":
        stored.fail = "eq"  # any key hashing to 1 now meets a comparison that raises
    j.begin()
    for change in (
        lambda: root.__setitem__(Hostile("hash" if fail == "hash" else "never"), 2),
        lambda: root.__delitem__(Hostile(fail)),
        lambda: root.pop(Hostile(fail), None),
        lambda: root["x"].remove(Hostile(fail)),
    ):
        try:
            change()
        except (ArithmeticError, KeyError, ValueError):
            pass
    j.commit()
    assert len(root) == 2 and root["x"] == [1]
    assert list(dict.values(root)) == list(old.values())


def test_twins_agree_on_diffs() -> None:
    import importlib

    mods = [importlib.import_module(name) for name in twins("cow").values()]
    results = []
    for mod in mods:
        j = mod.Journal("srv")
        root = j.adopt_root({"a": {"b": 1}, "l": [1], "s": {1}})
        j.begin()
        root["a"]["b"] = 2
        root["a"]["c"] = {"d": 1}
        del root["a"]["b"]
        root["l"].append({"x": 1})
        root["l"][1]["x"] = 2
        root["s"].add(2)
        root["new"] = 5
        j.commit()
        results.append((j.changes(), mod.detach(j.diff())))
    assert results[0] == results[1]
    assert results[0][0] == [("l",), ("new",), ("s",), ("a", "b"), ("a", "c")]
