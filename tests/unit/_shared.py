"""Test helpers shared by the unit tests."""


class Log(list):  # type: ignore[type-arg]
    """A list the tests read while servers append to it from their state.

    A server's state has value semantics: an exact ``list`` put in it is stored
    as a tracked copy. A subclass is an object of its own, held by reference,
    so the test and the server see the same log.
    """

    __slots__ = ()
