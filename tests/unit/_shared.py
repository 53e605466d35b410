"""Test helpers shared by the unit tests."""

import collections


class Log(collections.UserList):  # type: ignore[type-arg]
    """A list the tests read while servers append to it from their state.

    A server's state has value semantics: a ``list`` (or a subclass of one) put
    in it is stored as a tracked copy or snapshotted, and rolled back with a
    crash. A ``UserList`` is an object of its own, held by reference, so the
    test and the server see the same log, and what a crashed callback logged stays.
    """
