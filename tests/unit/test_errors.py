"""The exception hierarchy (API.md section 8) and the frozen records (section 10)."""

from __future__ import annotations

import pickle

import pytest
import trio

import trio_peeper as tp

ERROR_NAMES = [
    "CallTimeout",
    "NoProc",
    "ServerExited",
    "CallingSelf",
    "AlreadyStarted",
    "AlreadyRegistered",
    "StartError",
    "RestartIntensityExceeded",
    "MaxChildren",
    "InvalidReturn",
    "AccessError",
    "TableDeleted",
    "StorageError",
    "SyncFailed",
    "VersionError",
]

MIXINS = {
    "CallTimeout": TimeoutError,
    "NoProc": LookupError,
    "InvalidReturn": TypeError,
    "AccessError": PermissionError,
}

# one plausible instance of every error, with the values its message must name
SAMPLES = [
    pytest.param(lambda: tp.CallTimeout("counter", 1.5), ["'counter'", "1.5"], id="CallTimeout"),
    pytest.param(lambda: tp.NoProc("nobody"), ["'nobody'"], id="NoProc"),
    pytest.param(
        lambda: tp.ServerExited("counter", RuntimeError("boom")),
        ["'counter'", "RuntimeError('boom')"],
        id="ServerExited-exception",
    ),
    pytest.param(
        lambda: tp.ServerExited("counter", tp.KILLED), ["'counter'", "tp.KILLED"], id="ServerExited-KILLED"
    ),
    pytest.param(
        lambda: tp.ServerExited("counter", tp.Shutdown("bye")),
        ["'counter'", "'bye'"],
        id="ServerExited-Shutdown",
    ),
    pytest.param(lambda: tp.CallingSelf("counter"), ["'counter'"], id="CallingSelf"),
    pytest.param(lambda: tp.AlreadyStarted("counter"), ["'counter'"], id="AlreadyStarted"),
    pytest.param(lambda: tp.AlreadyRegistered(("room", 7)), ["('room', 7)"], id="AlreadyRegistered"),
    pytest.param(
        lambda: tp.StartError("Counter", ValueError("bad config")),
        ["'Counter'", "ValueError('bad config')"],
        id="StartError",
    ),
    pytest.param(
        lambda: tp.RestartIntensityExceeded("worker", 3, 5.0),
        ["'worker'", "3", "5"],
        id="RestartIntensityExceeded",
    ),
    pytest.param(lambda: tp.MaxChildren(10), ["10"], id="MaxChildren"),
    pytest.param(
        lambda: tp.InvalidReturn("handle_call", None, "tp.Reply, tp.NoReply or tp.Stop"),
        ["handle_call", "None", "tp.Reply"],
        id="InvalidReturn",
    ),
    pytest.param(
        lambda: tp.AccessError("table 'prices' is protected: only its owner writes"),
        ["'prices'"],
        id="AccessError",
    ),
    pytest.param(lambda: tp.TableDeleted("table 'prices' was deleted"), ["'prices'"], id="TableDeleted"),
    pytest.param(lambda: tp.StorageError("write failed: disk full"), ["disk full"], id="StorageError"),
    pytest.param(lambda: tp.SyncFailed("sync of 'user/1' failed"), ["'user/1'"], id="SyncFailed"),
    pytest.param(
        lambda: tp.VersionError("stored vsn 3 is newer than Account vsn 2"), ["3", "2"], id="VersionError"
    ),
]


def test_peeper_error_is_an_exception():
    assert issubclass(tp.PeeperError, Exception)
    assert not issubclass(tp.PeeperError, (TimeoutError, LookupError, TypeError))


@pytest.mark.parametrize("name", ERROR_NAMES)
def test_error_exists_and_subclasses_peeper_error(name):
    cls = getattr(tp, name)
    assert isinstance(cls, type)
    assert issubclass(cls, tp.PeeperError)
    assert cls.__module__ == "trio_peeper"


@pytest.mark.parametrize(("name", "mixin"), sorted(MIXINS.items()))
def test_error_mixins(name, mixin):
    assert issubclass(getattr(tp, name), mixin)


def test_catching_by_mixin():
    with pytest.raises(TimeoutError):
        raise tp.CallTimeout("counter", 5.0)
    with pytest.raises(LookupError):
        raise tp.NoProc("counter")
    with pytest.raises(TypeError):
        raise tp.InvalidReturn("init", tp.NoReply(0), "a state")
    with pytest.raises(PermissionError):
        raise tp.AccessError("private table")


def test_every_documented_error_is_sampled():
    sampled = {type(p.values[0]()).__name__ for p in SAMPLES}
    assert sampled == set(ERROR_NAMES)


@pytest.mark.parametrize(("make", "named"), SAMPLES)
def test_error_message_names_the_offending_values(make, named):
    err = make()
    message = str(err)
    assert message
    assert "\n" not in message
    for fragment in named:
        assert fragment in message


@pytest.mark.parametrize(("make", "named"), SAMPLES)
def test_error_pickles_round_trip(make, named):
    err = make()
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is type(err)
    assert str(clone) == str(err)
    assert clone.args == err.args


def test_pickled_errors_keep_their_attributes():
    err = pickle.loads(pickle.dumps(tp.CallTimeout("counter", 2.5)))
    assert (err.target, err.timeout) == ("counter", 2.5)

    err = pickle.loads(pickle.dumps(tp.ServerExited("counter", tp.KILLED)))
    assert err.reason is tp.KILLED

    err = pickle.loads(pickle.dumps(tp.ServerExited("counter", tp.SHUTDOWN)))
    assert err.reason is tp.SHUTDOWN

    err = pickle.loads(pickle.dumps(tp.ServerExited("counter", tp.Shutdown("bye"))))
    assert err.reason == tp.Shutdown("bye")
    assert tp.is_normal(err.reason)

    err = pickle.loads(pickle.dumps(tp.InvalidReturn("handle_cast", 42, "tp.NoReply or tp.Stop")))
    assert (err.callback, err.value) == ("handle_cast", 42)

    err = pickle.loads(pickle.dumps(tp.RestartIntensityExceeded("worker", 3, 5.0)))
    assert (err.restarts, err.window) == (3, 5.0)

    err = pickle.loads(pickle.dumps(tp.MaxChildren(4)))
    assert err.max_children == 4


async def test_already_started_with_a_live_ref_pickles(autojump_clock):
    class Idle(tp.GenServer):
        pass

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Idle, name="only")
        with pytest.raises(tp.AlreadyStarted) as info:
            await tp.start_server(nursery, Idle, name="only")
        assert info.value.ref is ref
        clone = pickle.loads(pickle.dumps(info.value))
        assert type(clone) is tp.AlreadyStarted
        assert str(clone) == str(info.value)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("sentinel", [tp.IGNORE, tp.TIMEOUT, tp.NO_REPLY, tp.SHUTDOWN, tp.KILLED])
def test_sentinels_pickle_to_themselves(sentinel):
    assert pickle.loads(pickle.dumps(sentinel)) is sentinel


# ---------------------------------------------------------- frozen records

RECORDS = [
    pytest.param(lambda: tp.Reply(1, 2), ["value", "state"], id="Reply"),
    pytest.param(lambda: tp.Reply(1, 2, timeout=3, continue_="c"), ["value", "state"], id="Reply-opts"),
    pytest.param(lambda: tp.NoReply(2), ["state"], id="NoReply"),
    pytest.param(lambda: tp.NoReply(2, hibernate=True), ["state"], id="NoReply-opts"),
    pytest.param(lambda: tp.Init(0), ["state"], id="Init"),
    pytest.param(lambda: tp.Init(0, timeout=1.0, continue_="go"), ["state"], id="Init-opts"),
    pytest.param(lambda: tp.Stop("normal", 0, reply="bye"), ["reason", "state", "reply"], id="Stop"),
    pytest.param(lambda: tp.Down("ref", "normal"), ["ref", "reason"], id="Down"),
    pytest.param(
        lambda: tp.ChildInfo("a", None, "worker", "permanent", "running"),
        ["id", "ref", "type", "restart", "status"],
        id="ChildInfo",
    ),
    pytest.param(
        lambda: tp.ChildCounts(3, 2, 1, 2), ["specs", "active", "supervisors", "workers"], id="ChildCounts"
    ),
    pytest.param(
        lambda: tp.Statistics(0, 1, 2, 3),
        ["mailbox_len", "handled", "restarts", "state_commits"],
        id="Statistics",
    ),
    pytest.param(lambda: tp.Shutdown("info"), ["info"], id="Shutdown"),
]


@pytest.mark.parametrize(("make", "fields"), RECORDS)
def test_records_are_frozen(make, fields):
    record = make()
    for field in fields:
        before = getattr(record, field)
        with pytest.raises(AttributeError):
            setattr(record, field, "changed")
        with pytest.raises(AttributeError):
            delattr(record, field)
        assert getattr(record, field) == before
    with pytest.raises(AttributeError):
        record.brand_new_attribute = 1  # slotted: no __dict__ either


@pytest.mark.parametrize("name", ["timeout", "continue_", "hibernate"])
def test_return_value_options_are_frozen(name):
    for record in (tp.Reply(1, 2, timeout=3), tp.NoReply(2, continue_="c"), tp.Init(0, hibernate=True)):
        with pytest.raises(AttributeError):
            setattr(record, name, None)


def test_return_value_fields_and_options():
    r = tp.Reply("v", "s", timeout=2.5, continue_="next", hibernate=True)
    assert (r.value, r.state, r.timeout, r.continue_, r.hibernate, r.sync) == (
        "v",
        "s",
        2.5,
        "next",
        True,
        False,
    )
    n = tp.NoReply("s")
    assert (n.state, n.timeout, n.continue_, n.hibernate, n.sync) == ("s", None, None, False, False)
    i = tp.Init("s", timeout=0)
    assert (i.state, i.timeout, i.continue_, i.hibernate) == ("s", 0, None, False)
    s = tp.Stop("normal", "s")
    assert (s.reason, s.state, s.reply) == ("normal", "s", tp.NO_REPLY)


def test_records_compare_by_value_and_use_attribute_access():
    assert tp.Down("r", "normal") == tp.Down(ref="r", reason="normal")
    assert tp.Down("r", "normal") != tp.Down("r", "other")
    assert hash(tp.Shutdown("x")) == hash(tp.Shutdown("x"))
    counts = tp.ChildCounts(specs=3, active=2, supervisors=1, workers=2)
    assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (3, 2, 1, 2)
    info = tp.ChildInfo("a", None, "worker", "transient", "stopped")
    assert (info.id, info.ref, info.type, info.restart, info.status) == (
        "a",
        None,
        "worker",
        "transient",
        "stopped",
    )
