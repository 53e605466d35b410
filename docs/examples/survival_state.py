"""Survival: what a rollback restores, and what it cannot: objects held by reference."""

from __future__ import annotations

import collections
import dataclasses

import trio

import trio_peeper as tp


@dataclasses.dataclass
class Account:  # a mutable dataclass: snapshotted field by field, rolled back
    balance: int
    history: list = dataclasses.field(default_factory=list)


@tp.snapshotted
class Quota:  # your own class, marked: snapshotted attribute by attribute, rolled back
    def __init__(self, daily: int) -> None:
        self.daily = daily
        self.used = 0


class Outbox:  # your own class, not marked: held by reference, never rolled back
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.live = None


class Audit:
    """A listener: called in the server's task, after each commit or crash."""

    def on_state_changed(self, old, new):
        before, after = old["accounts"]["ann"], new["accounts"]["ann"]
        print(f"  listener: ann {before.balance} -> {after.balance}")

    def on_crash(self, exception, state):
        balance = state["accounts"]["ann"].balance
        print(f"  listener: crash {exception!r}; committed: ann has {balance}")


class Bank(tp.GenServer, listener=Audit()):
    async def init(self, limits, outbox):
        return {
            "limits": limits,  # an exact dict: stored as a tracked copy
            "accounts": {"ann": Account(100)},
            "per_day": collections.defaultdict(int),  # a dict subclass: snapshotted
            "quota": Quota(3),
            "outbox": outbox,  # not copied: the server and main() share it
        }

    async def handle_call(self, request, caller, state):
        match request:
            case ("pay", who, amount):
                account = state["accounts"][who]
                account.balance -= amount  # every change below happens in place
                account.history.append(-amount)
                state["per_day"]["monday"] += 1
                state["quota"].used += 1
                state["outbox"].sent.append(f"receipt: {who} paid {amount}")
                if account.balance < 0:
                    raise ValueError(f"{who} would be overdrawn by {-account.balance}")
                return tp.Reply(account.balance, state)
            case "leak":
                state["outbox"].live = state["accounts"]  # a live reference escapes
                return tp.Reply(None, state)
            case "show":
                return tp.Reply(state, state)  # a copy, but for objects held by reference
        raise ValueError(f"unknown request {request!r}")


async def main() -> None:
    limits = {"max": 500}
    outbox = Outbox()
    async with tp.open_supervisor(tp.child(Bank, limits, outbox, name="bank")):
        print("pay 30 ->", await tp.call("bank", ("pay", "ann", 30)))
        try:
            await tp.call("bank", ("pay", "ann", 100))
        except tp.ServerExited as exc:
            print(f"pay 100 -> ServerExited({exc.reason!r})")

        state = await tp.call("bank", "show")
        print("after the crash:")
        print(f"  ann: {state['accounts']['ann']} (a dataclass: rolled back)")
        print(f"  per day: {dict(state['per_day'])} (a defaultdict: rolled back)")
        quota = state["quota"]
        print(f"  quota: {quota.used} of {quota.daily} used (@tp.snapshotted: rolled back)")
        print(f"  outbox: {outbox.sent} (not marked: not rolled back)")

        print("value semantics:")
        limits["max"] = 0  # the server holds its own copy
        state["accounts"]["ann"].balance = 1_000_000  # the reply is a copy
        state["quota"].used = 99  # a copy too
        state = await tp.call("bank", "show")
        ann, used = state["accounts"]["ann"].balance, state["quota"].used
        print(f"  limits {state['limits']}, ann {ann}, quota used {used}")

        print("changing the live state outside a callback:")
        await tp.call("bank", "leak")
        try:
            outbox.live["bob"] = Account(0)
        except RuntimeError as exc:
            print(f"  RuntimeError: {exc}")


if __name__ == "__main__":
    trio.run(main)
