"""A tiny ticket booth under a supervision tree, crashed on purpose.

Run it with ``make demo`` (or ``python docs/examples/demo.py``). Every line it
prints says what just happened and why: which supervisor reacted, with which
strategy, which restart type decided, and how many restarts each child has
had. The tree::

    booth              one_for_one, at most 5 restarts in 10 s
    ├── ledger         permanent   tickets sold per show
    ├── sales          rest_for_one supervisor
    │   ├── seats      permanent   seats left per show
    │   └── cashier    permanent   sells: takes a seat, then records the sale
    ├── announcer      transient   restarted after a crash, not a normal exit
    ├── promo          temporary   never restarted
    └── printers       one_for_one supervisor, at most 2 restarts in 5 s
        └── printer    permanent   jams on demand

Then a durable turnstile counts people in SQLite, in ``.demo/booth.db`` under
the current directory: run the demo again and it continues where it left
off (delete ``.demo`` to start over).
"""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

import trio_peeper as tp


def say(who: str, text: str) -> None:
    """What a server says about itself, indented under the narration."""
    print(f"    [{who}] {text}")


def incarnation() -> str:
    """'first start' or 'restart #n' for the server whose callback is running."""
    restarts = tp.current_server().restarts
    return "first start" if restarts == 0 else f"restart #{restarts}"


# --------------------------------------------------------------- the servers
#
# States are replaced here ({**state, ...}), which suits small states; changing
# them in place is just as safe, since a crash rolls the state back to the last
# commit, and cheaper for big ones (see docs/survival.md).


class BoothServer(tp.GenServer):
    """What all our servers share: they say so when they stop gracefully."""

    async def terminate(self, reason, state):
        say(tp.current_server().name, f"terminate({reason})")


class Ledger(BoothServer):
    """Tickets sold per show. Crashes on a sale it cannot record."""

    async def init(self):
        say("ledger", f"init ({incarnation()}): empty ledger")
        return {}

    async def restore(self, state):
        say("ledger", f"restore ({incarnation()}): keeps its last state {state}")
        return state

    async def handle_cast(self, message, state):
        _, show = message  # ("sold", show)
        if show is None:
            raise ValueError("a sale without a show")
        return tp.NoReply({**state, show: state.get(show, 0) + 1})

    async def handle_call(self, request, caller, state):
        return tp.Reply(state, state)  # "totals"


class Seats(BoothServer):
    """Seats left per show."""

    async def init(self, seats):
        say("seats", f"init ({incarnation()}): {seats}")
        return seats

    async def restore(self, state):
        say("seats", f"restore ({incarnation()}): keeps {state}")
        return state

    async def handle_call(self, request, caller, state):
        _, show = request  # ("take", show)
        left = state.get(show, 0)
        if left == 0:
            return tp.Reply(False, state)
        return tp.Reply(True, {**state, show: left - 1})


class Cashier(BoothServer):
    """Sells tickets: takes a seat from `seats`, then tells the `ledger`."""

    async def init(self):
        say("cashier", f"init ({incarnation()})")
        return 0  # tickets sold by this cashier

    async def restore(self, state):
        say("cashier", f"restore ({incarnation()}): has sold {state} tickets so far")
        return state

    async def handle_call(self, request, caller, state):
        _, show = request  # ("buy", show)
        if not await tp.call("seats", ("take", show)):
            return tp.Reply(f"sold out: {show}", state)
        await tp.cast("ledger", ("sold", show))
        return tp.Reply(f"ticket for {show}", state + 1)


class Announcer(BoothServer):
    """Reads announcements out. Crashes on an empty one; stops on "close"."""

    async def init(self):
        say("announcer", f"init ({incarnation()})")

    async def restore(self, state):
        say("announcer", f"restore ({incarnation()})")

    async def handle_call(self, request, caller, state):
        if request == "close":
            # a normal exit: a transient child is not restarted after it
            return tp.Stop("normal", state, reply="doors closed")
        if not request:
            raise ValueError("empty announcement")
        say("announcer", f"announces: {request}")
        return tp.Reply("ok", state)


class Promo(BoothServer):
    """A prize wheel that breaks at its first spin."""

    async def init(self):
        say("promo", f"init ({incarnation()})")

    async def handle_cast(self, message, state):
        raise RuntimeError("the prize wheel fell off")


class Printer(BoothServer):
    """Prints tickets; "jam" crashes it."""

    async def init(self):
        say("printer", f"init ({incarnation()}) with a fresh roll of paper")
        return 0  # tickets printed

    async def restore(self, state):
        say("printer", f"restore ({incarnation()}): {state} printed so far")
        return state

    async def handle_call(self, request, caller, state):
        if request == "jam":
            raise RuntimeError("paper jam")
        return tp.Reply("printed", state + 1)


class Turnstile(tp.DurableServer):
    """People through the door, kept in SQLite: survives the program itself."""

    async def handle_call(self, request, caller, state):
        if request == "new run":
            state["runs"] += 1
        elif request == "through":
            state["people"] += 1
        return tp.Reply(dict(state), state)  # every change is on disk before this reply


# --------------------------------------------------------------- narration


async def settle() -> None:
    """Wait until every task is idle: the supervisors have finished restarting.

    Demos and tests need this to print a stable picture. Real code does not:
    a call to a restarting server simply waits for the restart.
    """
    await trio.testing.wait_all_tasks_blocked()


def step(title: str) -> None:
    print()
    print(f"== {title}")


def note(*lines: str) -> None:
    for line in lines:
        print(f"    {line}")


def show_tree(sup: tp.Supervisor, depth: int = 0) -> None:
    """Print `which_children()` of *sup* and of the supervisors under it."""
    if depth == 0:
        note(f"{'id':<16} {'type':<10} {'restart':<9} {'status':<8} restarts")
    for info in sup.which_children():
        label = "  " * depth + str(info.id)
        restarts = info.ref.restarts if info.ref is not None else "-"
        row = f"{label:<16} {info.type:<10} {info.restart:<9} {info.status:<8}"
        note(f"{row} {restarts}")
        if info.type == "supervisor" and info.status == "running":
            show_tree(info.ref, depth + 1)


async def main() -> None:
    step("Opening the booth: children start in order, each fully started first")
    async with tp.open_supervisor(
        tp.child(Ledger, id="ledger", name="ledger"),
        tp.child(
            tp.supervisor(
                tp.child(Seats, {"hamlet": 2, "macbeth": 40}, id="seats", name="seats"),
                tp.child(Cashier, id="cashier", name="cashier"),
                strategy="rest_for_one",
            ),
            id="sales",
        ),
        tp.child(Announcer, id="announcer", name="announcer", restart="transient"),
        tp.child(Promo, id="promo", name="promo", restart="temporary"),
        tp.child(
            tp.supervisor(
                tp.child(Printer, id="printer", name="printer"),
                max_restarts=2,
                max_seconds=5.0,
            ),
            id="printers",
        ),
        strategy="one_for_one",
        max_restarts=5,
        max_seconds=10.0,
    ) as booth:
        show_tree(booth)

        step("Business as usual")
        for show in ("hamlet", "hamlet", "hamlet", "macbeth"):
            note(f"buy {show}: {await tp.call('cashier', ('buy', show))}")
        note(f"ledger totals: {await tp.call('ledger', 'totals')}")

        step("1. ledger crashes (a cast it cannot handle)")
        note("booth is one_for_one: only the ledger restarts;")
        note("it is permanent, so it always does")
        await tp.cast("ledger", ("sold", None))  # a cast has no reply: nobody is told
        totals = await tp.call("ledger", "totals")  # waits for the restart
        note(f"ledger totals: {totals} (the call waited for the restart)")
        note(f"ledger restarts: {tp.whereis('ledger').restarts}")

        step("2. seats is killed (ref.kill(): no terminate, exit reason tp.KILLED)")
        note(
            "sales is rest_for_one: seats and every child started after it",
            "(cashier) restart; the ledger, outside sales, is untouched",
        )
        tp.whereis("seats").kill()
        await settle()
        note(f"buy macbeth: {await tp.call('cashier', ('buy', 'macbeth'))}")
        for name in ("seats", "cashier"):
            note(f"{name} restarts: {tp.whereis(name).restarts}")
        note("sales counts that group restart as ONE restart (it allows 3 in 5 s)")

        step("3. announcer (transient) crashes, then stops normally")
        try:
            await tp.call("announcer", "")
        except tp.ServerExited as exc:
            note(f"caller got ServerExited, reason {exc.reason!r}")
        note("an abnormal exit: a transient child is restarted")
        answer = await tp.call("announcer", "the show starts in 5 minutes")
        note(f"announce: {answer}")
        note(f"close: {await tp.call('announcer', 'close')}")
        await settle()
        note(
            "exit reason 'normal': a transient child is NOT restarted;",
            "it stays listed as stopped",
        )

        step("4. promo (temporary) crashes")
        await tp.cast("promo", "spin")
        await settle()
        note("a temporary child is never restarted, and leaves which_children()")
        note(f"whereis('promo'): {tp.whereis('promo')}")

        step("5. printer jams three times: restart intensity")
        note("printers allows max_restarts=2 in max_seconds=5")
        for jam in (1, 2, 3):
            try:
                await tp.call("printer", "jam")
            except tp.ServerExited as exc:
                note(f"jam {jam}: caller got ServerExited({exc.reason!r})")
            await settle()
            if jam < 3:
                note(f"printer restarts: {tp.whereis('printer').restarts}")
        note(
            "the third restart within 5 s is one too many: printers stops its",
            "children and fails with RestartIntensityExceeded; booth sees a crashed",
            "child and, one_for_one, restarts printers, which starts a brand-new",
            "printer from init: a supervisor that gives up stops its children for",
            "good, state and all",
        )
        note(f"print: {await tp.call('printer', 'ticket')}")
        note(
            "booth itself has made 3 restarts (ledger, announcer, printers) of the",
            "5 it allows in 10 s; seats and cashier were restarted by sales",
        )

        step("The tree now")
        show_tree(booth)
        counts = booth.count_children()
        note(
            f"count_children(): {counts.specs} specs, {counts.active} active, "
            f"{counts.supervisors} supervisors, {counts.workers} workers"
        )

        step("Closing the booth: children stop in reverse start order")
    print()
    print("Booth closed.")
    await durable_turnstile()


DEMO_DB = Path(".demo") / "booth.db"  # relative to the current directory


async def durable_turnstile() -> None:
    step("6. A durable turnstile: its state is in SQLite and outlives the program")
    note(f"stored in {DEMO_DB.as_posix()} (delete {DEMO_DB.parent.as_posix()}/ to start over)")
    DEMO_DB.parent.mkdir(exist_ok=True)
    async with tp.open_node(storage=tp.storage.SQLite(DEMO_DB)):
        turnstile = tp.child(
            Turnstile, key="booth/turnstile", initial_state={"runs": 0, "people": 0}, name="turnstile"
        )
        async with tp.open_supervisor(turnstile):
            state = await tp.call("turnstile", "new run")
            if state["runs"] == 1:
                note("first run: counters start at 0")
            else:
                note(f"counters continue from {state['people']} (run #{state['runs']})")
            for _ in range(3):
                state = await tp.call("turnstile", "through")
            note(f"3 people through: {state['people']} in all")
            tp.whereis("turnstile").kill()
            state = await tp.call("turnstile", "get")
            note(f"killed and restarted: still {state['people']}")
    note("run the demo again: the count goes on from here")


if __name__ == "__main__":
    trio.run(main)
