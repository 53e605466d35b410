"""Tutorial, part 2: a supervision tree. Strategies, restarts, which_children."""

from __future__ import annotations

import trio
import trio.testing

import trio_peeper as tp


class Service(tp.GenServer):
    """A stand-in for a real service: answers calls, says when it starts or stops."""

    async def init(self, label):
        print(f"  {label}: init")
        return {"label": label, "served": 0}

    async def restore(self, state):
        # runs instead of init when the supervisor restarts this server
        print(f"  {state['label']}: restarted, continues from {state}")
        return state

    async def handle_call(self, request, caller, state):
        if request == "crash":
            raise RuntimeError(f"{state['label']} crashed on purpose")
        answer = f"{state['label']}: {request}"
        return tp.Reply(answer, {**state, "served": state["served"] + 1})

    async def terminate(self, reason, state):
        print(f"  {state['label']}: terminate({reason})")


def show(sup: tp.Supervisor, indent: str = "  ") -> None:
    """Print the children of *sup*, and of the supervisors under it."""
    for info in sup.which_children():
        what = f"{info.type}, {info.restart}, {info.status}"
        print(f"{indent}{info.id}: {what}, restarts={info.ref.restarts}")
        if info.type == "supervisor":
            show(info.ref, indent + "    ")


async def main() -> None:
    # the tree:  app (one_for_one)
    #            ├── cache
    #            └── backend (rest_for_one)
    #                ├── db
    #                └── api     (uses db: restarts whenever db does)
    backend = tp.supervisor(
        tp.child(Service, "db", id="db", name="db"),
        tp.child(Service, "api", id="api", name="api"),
        strategy="rest_for_one",
    )
    print("starting: children start in order, each fully started before the next")
    async with tp.open_supervisor(
        tp.child(Service, "cache", id="cache", name="cache"),
        tp.child(backend, id="backend"),
        strategy="one_for_one",
        max_restarts=3,
        max_seconds=5.0,
    ) as app:
        show(app)
        print(await tp.call("api", "GET /"))

        print("cache crashes: app is one_for_one, so only cache restarts")
        try:
            await tp.call("cache", "crash")
        except tp.ServerExited as exc:
            print(f"  the caller gets ServerExited: {exc.reason!r}")
        # a call to a restarting server waits for the restart
        print(await tp.call("cache", "lookup"))

        print("db is killed: backend is rest_for_one, so db and api (after it) restart")
        tp.whereis("db").kill()
        print(await tp.call("db", "SELECT 1"))  # waits for db's restart
        print(await tp.call("api", "GET /users"))

        print("api is killed: nothing was started after api, so only api restarts")
        tp.whereis("api").kill()
        print(await tp.call("api", "GET /users"))
        await (
            trio.testing.wait_all_tasks_blocked()
        )  # let the supervisors settle before we look
        show(app)

        print("leaving the block: children stop in reverse start order")
    print("stopped")


if __name__ == "__main__":
    trio.run(main)
