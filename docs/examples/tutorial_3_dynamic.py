"""Tutorial, part 3: dynamic children, one per key, found by a Registry via-name."""

from __future__ import annotations

import trio

import trio_peeper as tp


class Room(tp.GenServer):
    """A chat room: who is in it and the last few messages."""

    async def init(self, history_size, room):
        # history_size comes from the dynamic supervisor's extra_args,
        # room from the child spec's own args
        print(f"  room {room!r} opens (keeps {history_size} messages)")
        return {"room": room, "size": history_size, "members": frozenset(), "log": ()}

    async def handle_call(self, request, caller, state):
        match request:
            case ("join", user):
                members = state["members"] | {user}
                return tp.Reply("welcome", {**state, "members": members})
            case ("say", user, text):
                if user not in state["members"]:
                    return tp.Reply("join first", state)
                log = (*state["log"], f"{user}: {text}")[-state["size"] :]
                return tp.Reply("ok", {**state, "log": log})
            case ("history",):
                return tp.Reply(list(state["log"]), state)
        raise ValueError(f"unknown request {request!r}")

    async def terminate(self, reason, state):
        print(f"  room {state['room']!r} closes ({reason})")


async def open_room(rooms, registry, room) -> tp.ServerRef:
    """The server of *room*, started on first use."""
    ref = tp.whereis(registry.via(room))
    if ref is None:
        name = registry.via(room, "chat room")  # the value is stored with the key
        spec = tp.child(Room, room, name=name, restart="transient")
        try:
            ref = await rooms.start_child(spec)
        except tp.AlreadyStarted as exc:  # another task started it first
            ref = exc.ref
    return ref


async def main() -> None:
    registry = tp.Registry(keys="unique")
    async with tp.open_dynamic_supervisor(max_children=3, extra_args=(2,)) as rooms:
        lobby = await open_room(rooms, registry, "lobby")
        print(await lobby.call(("join", "ann")))

        # anyone can reach the room by its via-name, without holding the ref
        lobby_name = registry.via("lobby")
        await tp.call(lobby_name, ("join", "bob"))
        for text in ("hi", "hello", "how are you?"):
            await tp.call(lobby_name, ("say", "bob", text))
        print("lobby history:", await tp.call(lobby_name, ("history",)))

        # the same key always gives the same server
        print("same server:", await open_room(rooms, registry, "lobby") is lobby)

        for room in ("python", "trio"):
            await open_room(rooms, registry, room)
        entries = registry.select(lambda key, ref, value: True)  # (key, ref, value)
        print("registered:", sorted((key, value) for key, _, value in entries))
        try:
            await open_room(rooms, registry, "erlang")
        except tp.MaxChildren as exc:
            print(f"a 4th room: MaxChildren ({exc})")

        # a crashed room is restarted with its name and registry entry intact
        trio_room = registry.via("trio")
        try:
            await tp.call(trio_room, ("dance",))
        except tp.ServerExited as exc:
            print(f"trio room crashed: {exc.reason!r}")
        print("trio room after the crash:", await tp.call(trio_room, ("join", "cy")))
        print("restarts of the trio room:", tp.whereis(trio_room).restarts)

        # closing a room frees its key at once, and its place under max_children
        await rooms.terminate_child(tp.whereis(registry.via("python")))
        print("python room registered:", registry.lookup("python"))
        await open_room(rooms, registry, "erlang")

        counts = rooms.count_children()
        ids = [info.id for info in rooms.which_children()]
        print(f"children: {counts.active} active of {counts.specs}; ids: {ids}")
        print("leaving the block: the rooms close concurrently")
    print("registry entries left:", registry.count())


if __name__ == "__main__":
    trio.run(main)
