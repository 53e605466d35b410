"""trio_peeper: Erlang/OTP GenServers and supervisors for Trio, with state that survives crashes.

The public facade: re-exports only. See API.md / the reference docs.
"""

from ._child_spec import ChildSpec as ChildSpec
from ._child_spec import child as child
from ._child_spec import dynamic_supervisor as dynamic_supervisor
from ._child_spec import supervisor as supervisor
from . import storage as storage
from . import testing as testing
from ._durable import DurableServer as DurableServer
from ._errors import AccessError as AccessError
from ._errors import AlreadyRegistered as AlreadyRegistered
from ._errors import AlreadyStarted as AlreadyStarted
from ._errors import CallingSelf as CallingSelf
from ._errors import CallTimeout as CallTimeout
from ._errors import InvalidReturn as InvalidReturn
from ._errors import MaxChildren as MaxChildren
from ._errors import NoProc as NoProc
from ._errors import PeeperError as PeeperError
from ._errors import RestartIntensityExceeded as RestartIntensityExceeded
from ._errors import ServerExited as ServerExited
from ._errors import StartError as StartError
from ._errors import StorageError as StorageError
from ._errors import SyncFailed as SyncFailed
from ._errors import TableDeleted as TableDeleted
from ._errors import VersionError as VersionError
from ._genserver import GenServer as GenServer
from ._node import Node as Node
from ._node import open_node as open_node
from ._messages import IGNORE as IGNORE
from ._messages import KILLED as KILLED
from ._messages import NO_REPLY as NO_REPLY
from ._messages import SHUTDOWN as SHUTDOWN
from ._messages import TIMEOUT as TIMEOUT
from ._messages import ChildCounts as ChildCounts
from ._messages import ChildInfo as ChildInfo
from ._messages import Down as Down
from ._messages import Init as Init
from ._messages import NoReply as NoReply
from ._messages import Reply as Reply
from ._messages import Shutdown as Shutdown
from ._messages import Statistics as Statistics
from ._messages import Stop as Stop
from ._messages import TableTransfer as TableTransfer
from ._messages import is_normal as is_normal
from ._ref import Monitor as Monitor
from ._ref import ServerRef as ServerRef
from ._ref import current_server as current_server
from ._ref import pdict as pdict
from ._ref import reply as reply
from ._registry import Registry as Registry
from ._registry import Via as Via
from ._registry import call as call
from ._registry import cast as cast
from ._registry import send as send
from ._registry import whereis as whereis
from ._start import Timer as Timer
from ._state import snapshotted as snapshotted
from ._start import send_after as send_after
from ._start import start_server as start_server
from ._supervisor import Supervisor as Supervisor
from ._supervisor import TaskRef as TaskRef
from ._supervisor import open_dynamic_supervisor as open_dynamic_supervisor
from ._supervisor import open_supervisor as open_supervisor
from ._supervisor import transfer as transfer
from ._tables import Table as Table
from ._tables import whereis_table as whereis_table

__version__ = "0.1.0"


def _fixup_module_metadata() -> None:
    """Make every public object claim ``trio_peeper`` as its module (as trio does)."""
    for name, obj in list(globals().items()):
        if not name.startswith("_") and getattr(obj, "__module__", "").startswith("trio_peeper."):
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):
                pass


_fixup_module_metadata()
del _fixup_module_metadata
