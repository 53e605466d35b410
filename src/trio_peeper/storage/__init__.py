"""Storage backends for durable servers (`tp.storage.SQLite`, `Postgres`, `Memory`, `Mirror`)."""

from ._base import Fenced as Fenced
from ._base import Storage as Storage
from ._base import Stored as Stored
from ._base import Write as Write
from ._memory import Memory as Memory
from ._mirror import Mirror as Mirror
from ._postgres import Postgres as Postgres
from ._sqlite import SQLite as SQLite

__all__ = ["Fenced", "Memory", "Mirror", "Postgres", "SQLite", "Storage", "Stored", "Write"]
