"""The root of every error edrfleet raises on the controller, and the kinds the CLI maps to exits.

Each error class of the package derives from one kind below *and* keeps the built-in class it had
before (``ValueError``, ``ConnectionError``, ``OSError``, ...), so ``except ValueError`` written
against the old classes still catches them.  Its message is one line naming the file, line or
host, and the fix.

    InputError  exit 2: an inventory, policy, template or argument that cannot be used as given
    HostError   exit 1: a host (or a lab host, a VM) failed or could not be reached

The agent's own errors (``edrfleet/agent``) stay outside this tree: the agent runs on the hosts
from a zipapp of ``edrfleet/__init__.py`` and ``edrfleet/agent/`` alone, and its errors end in
its own log and exit status there, never in this CLI's mapping.

This module imports nothing, so every room (the policy compiler included) may import it.
"""

from __future__ import annotations


class EdrfleetError(Exception):
    """Any error of edrfleet's controller side; the CLI never shows one as a traceback."""


class InputError(EdrfleetError):
    """Bad input: fix the file or the argument the message names, then run again."""


class HostError(EdrfleetError):
    """A host failed or was unreachable: the input was fine, the host was not."""
