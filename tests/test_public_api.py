"""Pins the public facade (STYLE S1.2): exported names, their module, final classes."""

import trio_peeper as tp

EXPORTED = sorted(
    """
    AccessError AlreadyRegistered AlreadyStarted CallTimeout CallingSelf ChildCounts ChildInfo
    ChildSpec Down DurableServer GenServer IGNORE Init InvalidReturn KILLED MaxChildren Monitor NO_REPLY Node NoProc
    NoReply PeeperError Registry Reply RestartIntensityExceeded SHUTDOWN ServerExited ServerRef
    Shutdown StartError Statistics Stop StorageError Supervisor SyncFailed TIMEOUT TableDeleted
    Table TableTransfer TaskRef Timer VersionError Via call cast child current_server dynamic_supervisor
    is_normal open_dynamic_supervisor open_node open_supervisor pdict reply send send_after snapshotted start_server storage supervisor testing
    transfer whereis whereis_table
    """.split()
)

# documented base classes and exceptions may be subclassed
SUBCLASSABLE = {"GenServer", "DurableServer"}


def test_exported_names_are_pinned() -> None:
    assert EXPORTED == sorted(n for n in dir(tp) if not n.startswith("_"))


def test_every_public_object_claims_the_public_module() -> None:
    for name in EXPORTED:
        obj = getattr(tp, name)
        module = getattr(obj, "__module__", None)
        if name in ("storage", "testing"):
            assert obj.__name__ == f"trio_peeper.{name}"
        elif isinstance(obj, type) or callable(obj):
            assert module == "trio_peeper", (name, module)


def test_concrete_classes_are_final() -> None:
    for name in EXPORTED:
        obj = getattr(tp, name)
        if not isinstance(obj, type) or issubclass(obj, BaseException) or name in SUBCLASSABLE:
            continue
        try:
            type("Sub", (obj,), {})
        except TypeError:
            continue
        raise AssertionError(f"tp.{name} can be subclassed")


def test_server_ref_is_not_constructed_by_users() -> None:
    try:
        tp.ServerRef()
    except TypeError as e:
        assert "start_server" in str(e)
    else:
        raise AssertionError("ServerRef() constructed")
