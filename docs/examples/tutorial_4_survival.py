"""Tutorial, part 4: what survives a crash. Rollback, a table, the process dict."""

from __future__ import annotations

import trio

import trio_peeper as tp


class PageViews(tp.GenServer):
    """Counts page views (the state) and caches rendered pages (a table)."""

    async def init(self):
        # runs once: the table, the process dictionary and the state all
        # outlive this incarnation
        tp.Table("set", name="rendered")  # owned by this server, across restarts
        tp.pdict()["incarnation"] = 1
        print("  init: first start")
        return {"total": 0, "pages": {}, "recent": []}

    async def restore(self, state):
        # every restart: the state is the last committed one, the table and
        # the process dictionary are the same objects as before the crash
        tp.pdict()["incarnation"] += 1
        n = tp.pdict()["incarnation"]
        print(f"  restore: incarnation {n}, total {state['total']}")
        return state

    async def handle_call(self, request, caller, state):
        if request == "stats":
            return tp.Reply(state, state)  # the caller gets a plain copy
        if request == "pdict":
            return tp.Reply(dict(tp.pdict()), state)
        page = request
        tp.pdict()["attempts"] = tp.pdict().get("attempts", 0) + 1
        # change the state in place, nested...
        state["total"] += 1
        views = state["pages"].setdefault(page, {"views": 0})
        views["views"] += 1
        state["recent"].append(page)
        del state["recent"][:-2]  # keep the last two
        # ...then render, which may raise: the changes above are rolled back
        return tp.Reply(render(page), state)


def render(page: str) -> str:
    """The page's HTML, from the cache table when it is there."""
    cache = tp.whereis_table("rendered")
    html = cache.lookup(page)
    if html is not None:
        return f"{html} (cached)"
    if page == "/broken":
        raise ValueError(f"cannot render {page!r}")
    html = f"<h1>{page}</h1>"
    cache[page] = html  # a table write is kept even if the callback crashes
    return html


async def main() -> None:
    async with tp.open_supervisor(tp.child(PageViews, name="views")):
        for page in ("/", "/about", "/"):
            print(f"view {page} -> {await tp.call('views', page)}")
        print("stats:", await tp.call("views", "stats"))

        print("a call that changes the state in place, then raises:")
        try:
            await tp.call("views", "/broken")
        except tp.ServerExited as exc:
            print(f"  the caller gets ServerExited: {exc.reason!r}")
        print("stats:", await tp.call("views", "stats"))

        print("a kill (no terminate, no chance to save anything):")
        tp.whereis("views").kill()
        print(f"view /about -> {await tp.call('views', '/about')}")
        cache = tp.whereis_table("rendered")
        print(f"cache: {cache.keys()}, owner {cache.owner}")
        print("stats:", await tp.call("views", "stats"))
        # the process dictionary is not rolled back: the crashed call counted
        print("process dictionary:", await tp.call("views", "pdict"))

        ref = tp.whereis("views")
        print(f"restarts: {ref.restarts}, commits: {ref.statistics().state_commits}")
    # stopped for good: the state, the table and the dictionary are dropped
    print("table after the supervisor stopped:", tp.whereis_table("rendered"))


if __name__ == "__main__":
    trio.run(main)
