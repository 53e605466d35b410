"""Changing the stored shape of a durable server: vsn, dump_state and load_state."""

from dataclasses import dataclass, replace

import trio

import trio_peeper as tp

KEY = "account/ann"


class AccountV1(tp.DurableServer, vsn=1):
    """What was deployed first: the state is a dict, the balance a float of euros."""

    async def handle_call(self, euros, caller, state):
        state["balance"] += euros
        return tp.Reply(state["balance"], state)


@dataclass
class Account:
    owner: str
    cents: int


class AccountV2(tp.DurableServer, vsn=2):
    """The next release: an Account in memory, whole cents on disk."""

    def dump_state(self, account):  # what is stored: msgpack/JSON-able data
        return {"owner": account.owner, "cents": account.cents}

    def load_state(self, old_vsn, data):  # every load, from any older vsn
        if old_vsn == 1:
            return Account(data["owner"], round(data["balance"] * 100))
        return Account(data["owner"], data["cents"])

    async def handle_call(self, cents, caller, account):
        account = replace(account, cents=account.cents + cents)
        return tp.Reply(account.cents, account)


async def deploy(storage, server_class, amount):
    """Run one release of the program: start the account, pay in *amount*, stop."""
    async with tp.open_node(storage=storage) as node:
        async with tp.open_dynamic_supervisor() as accounts:
            first = {"owner": "ann", "balance": 0.0}
            try:
                ref = await accounts.start_child(tp.child(server_class, key=KEY, initial_state=first))
            except tp.VersionError as exc:
                print(f"{server_class.__name__}: VersionError: {exc}")
                return
            balance = await ref.call(amount)
            stored = await node.storage.load(KEY)
            print(f"{server_class.__name__}: balance {balance!r}, stored with vsn {stored.vsn}")


async def main() -> None:
    storage = tp.storage.Memory()  # one store for every "release" of this example
    await deploy(storage, AccountV1, 12.5)  # first boot: stored as vsn 1
    await deploy(storage, AccountV2, 250)  # loads vsn 1, migrates, stores vsn 2 at once
    await deploy(storage, AccountV2, 1)  # loads vsn 2
    await deploy(storage, AccountV1, 1.0)  # rolled back: the old code refuses newer data


if __name__ == "__main__":
    trio.run(main)
