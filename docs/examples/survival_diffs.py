"""Survival: the journal under every preserving server, its diffs and its rollback.

`_fastcore.Journal` is internal (not part of the public API, and it may
change); it is used directly here to show what each commit records.
"""

from __future__ import annotations

import trio

from _fastcore import Journal, apply, detach


def show(title: str, diff: dict) -> None:
    print(title)
    for path, value in diff.items():
        print(f"  {path}: {value!r}")


async def main() -> None:
    j = Journal("example")
    # adoption: the value becomes a tree of tracked dicts and lists (a copy)
    state = j.adopt_root({"users": {"ann": {"visits": 3}}, "total": 3, "log": []})
    show("adopted: the whole state, at the path ()", j.diff())

    j.begin()  # what the server does before each callback
    state["users"]["ann"]["visits"] += 1
    state["total"] += 1
    j.commit()  # ... and after it returned normally
    show("changes inside dicts: one path per key", j.diff())

    before = detach(state)  # a plain copy, as a storage backend would hold
    j.begin()
    state["log"].append("bob joined")
    state["users"]["bob"] = {"visits": 1}
    del state["users"]["ann"]
    j.commit()
    diff = j.diff()
    show("a list is reported whole; a deleted key as DELETED", diff)
    print("apply(diff, before) == state:", apply(diff, before) == detach(state))

    j.begin()
    state["users"]["bob"]["visits"] += 1
    state["users"] = {}
    j.commit()
    show("a shorter path covers the longer ones below it", j.diff())

    j.begin()
    state["users"]["cy"] = {"visits": 0}
    del state["total"]
    state["log"].clear()
    j.rollback()  # what the server does when a callback raises
    print("rolled back:", state)
    print("(a deleted key comes back at the end of its dict)")


if __name__ == "__main__":
    trio.run(main)
