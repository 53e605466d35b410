"""Survival: tables outlive crashes; heirs, give_away and keep_tables=False."""

from __future__ import annotations

import trio

import trio_peeper as tp


class Keeper(tp.GenServer):
    """Makes a table at its first start, or receives one; writes on request."""

    async def init(self, label, table_name=None, heir=None):
        if table_name is not None:
            heir_ref = None if heir is None else tp.whereis(heir)
            table = tp.Table("ordered_set", name=table_name, heir=heir_ref)
            table.insert_many([("apple", 3), ("pear", 5)])
        return label

    async def handle_info(self, message, state):
        match message:
            case tp.TableTransfer(table, from_ref, data):
                print(f"  {state}: now owns {table.name!r}, from {from_ref}, {data!r}")
        return tp.NoReply(state)

    async def handle_call(self, request, caller, state):
        match request:
            case ("put", table_name, key, value):
                tp.whereis_table(table_name)[key] = value
            case ("give", table_name, to):
                tp.whereis_table(table_name).give_away(tp.whereis(to), "a gift")
            case "crash":
                tp.whereis_table("prices")["plum"] = 1  # not rolled back
                raise RuntimeError("crash")
        return tp.Reply("ok", state)


async def crash(name: str) -> None:
    try:
        await tp.call(name, "crash")
    except tp.ServerExited:
        pass


async def main() -> None:
    async with tp.open_dynamic_supervisor() as sup:
        await sup.start_child(tp.child(Keeper, "heir", name="heir"))
        spec = tp.child(Keeper, "loader", "prices", "heir", name="loader")
        loader = await sup.start_child(spec)
        prices = tp.whereis_table("prices")
        print(f"{prices}: owner {prices.owner.name}, heir {prices.heir.name}")
        try:
            prices["apple"] = 1  # protected: anyone reads, only the owner writes
        except tp.AccessError:  # a PermissionError
            print("AccessError: only the owner may write to a protected table")

        print("the owner crashes: the table, its contents, its owner stay")
        await crash("loader")
        print(f"  {prices.items()}, owner {prices.owner.name}")

        print("the owner stops for good: the heir inherits the table")
        await sup.terminate_child(loader)
        await tp.call("heir", ("put", "prices", "kiwi", 2))
        print(f"  owner {prices.owner.name}, heir {prices.heir}: {prices.keys()}")

        print("give_away: the new owner is told with a TableTransfer")
        await sup.start_child(tp.child(Keeper, "shop", name="shop"))
        await tp.call("heir", ("give", "prices", "shop"))
        await tp.call("shop", ("put", "prices", "fig", 4))
        print(f"  owner {prices.owner.name}, {len(prices)} items")

        print("the last owner stops with no heir: the table is deleted")
        await sup.terminate_child(tp.whereis("shop"))
        try:
            prices.lookup("fig")
        except tp.TableDeleted as exc:
            print(f"  TableDeleted: {exc}; whereis_table: {tp.whereis_table('prices')}")

        print("keep_tables=False: a crash deletes the server's tables")
        spec = tp.child(Keeper, "temp", "prices", name="temp", keep_tables=False)
        await sup.start_child(spec)
        await crash("temp")
        print(f"  after the crash: {tp.whereis_table('prices')}")


if __name__ == "__main__":
    trio.run(main)
