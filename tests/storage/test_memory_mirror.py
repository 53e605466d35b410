"""The conformance kit on the in-memory backend and on Mirror (over Memory and over SQLite)."""

from pathlib import Path

from trio_peeper.storage import Memory, Mirror, SQLite
from trio_peeper.testing import check_storage


async def test_memory_passes_the_kit() -> None:
    shared = Memory()
    await check_storage(lambda: shared)


async def test_mirror_over_two_memories_passes_the_kit() -> None:
    primary, secondary = Memory(), Memory()
    await check_storage(lambda: Mirror(primary, secondary))


async def test_mirror_from_memory_to_sqlite_passes_the_kit(tmp_path: Path) -> None:
    old = Memory()
    await check_storage(lambda: Mirror(SQLite(str(tmp_path / "new.db")), old))


async def test_mirror_migrates_a_record_found_only_in_the_secondary() -> None:
    from trio_peeper.storage import Write
    from trio_peeper.storage._base import WHOLE
    from trio_peeper.storage._codec import decode_record, encode_record, part_name

    old, new = Memory(), Memory()
    await old.open()
    token = await old.claim("k", "someone")
    await old.write([Write("k", token, 1, {part_name("a"): encode_record(1), part_name("b"): encode_record(2)})])
    await old.release("k", token)
    mirror = Mirror(new, old)
    await mirror.open()
    mine = await mirror.claim("k", "me")
    stored = await mirror.load("k")  # from the secondary, copied to the primary
    assert stored is not None and len(stored.parts) == 2
    (result,) = await mirror.write([Write("k", mine, 1, {part_name("a"): encode_record(10)})])
    assert result is None
    in_primary = await new.load("k")
    assert in_primary is not None
    assert {k: decode_record(v) for k, v in in_primary.parts.items()} == {part_name("a"): 10, part_name("b"): 2}
    assert WHOLE not in in_primary.parts
    await mirror.aclose()
    await old.aclose()
