"""Stored bytes never depend on which `_fastcore` core held the state (DESIGN.md "Durability").

A durable write encodes detached values of the state. Both journal twins, given
the same state and the same edits, must produce byte-identical records, which
decode to the same value.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from trio_peeper.storage._codec import decode_record, encode_record


@dataclasses.dataclass
class Account:
    balance: int
    history: list[int]


def test_both_cores_write_the_same_records() -> None:
    records = []
    for name in ("_fastcore._cow", "_fastcore._cow_py"):
        cow = importlib.import_module(name)
        j = cow.Journal("srv")
        root: Any = j.adopt_root({"users": {"ann": {"visits": 1}}, "log": ["boot"], "acct": Account(5, [5]), "t": (1, "x")})
        j.begin()
        root["users"]["bob"] = {"visits": 0}
        root["users"]["ann"]["visits"] += 1
        root["log"].append("bob joined")
        root["acct"].balance = 7
        root["acct"].history.append(7)
        j.commit()
        records.append({k: encode_record(cow.detach(v)) for k, v in root.items()})
    assert records[0] == records[1]
    assert decode_record(records[0]["users"]) == {"ann": {"visits": 2}, "bob": {"visits": 0}}
    assert decode_record(records[0]["acct"]) == {"balance": 7, "history": [5, 7]}
