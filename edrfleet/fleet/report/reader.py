"""The spool reader the controller ships with every pull: no installed agent needed.

``edrfleet report`` does not run the host's ``agent.pyz pull``: it runs the host's python on a
small program sent on its stdin (``python3 - ARGS``), holding this controller's own copy of the
host side of the pull (``edrfleet.agent.pull`` and the two agent modules it reads with,
``spool`` and ``status``, standard library only).  So:

- after ``uninstall`` with the spool kept (``agent.pyz`` gone), the spool is still pulled, and
  the frame says ``installed: false``: the report shows the host as uninstalled;
- the frame format has one version on both ends, whatever release a host runs;
- nothing is written on the host.

Not in the command line: an 18 KiB argument is past what the kernel scans of an argv, and
the agent's own policy blocks such an exec (``unscanned: block``) — the pull of an enforcing
host would be killed.  On stdin the argv stays short and plain.  The modules travel
zlib-compressed and base64-encoded inside the program (~18 KiB a chunk's command).

Example::

    >>> argv = reader_argv("/usr/bin/python3", ["--spool", "/var/lib/edrfleet"])
    >>> argv
    ['/usr/bin/python3', '-', '--spool', '/var/lib/edrfleet']
    >>> transport.run(argv, input=reader_input())
"""

from __future__ import annotations

import base64
import functools
import json
import zlib
from collections.abc import Sequence
from importlib import resources

from edrfleet import __version__

# In import order: each may import only the ones before it (and the standard library).
MODULES = ("edrfleet.agent.spool", "edrfleet.agent.status", "edrfleet.agent.pull")

# Registers the modules as a package tree in sys.modules, then runs pull's own CLI.
_BOOT = """import base64,json,sys,types,zlib
v,src=json.loads(zlib.decompress(base64.b64decode({blob!r})))
for n in ("edrfleet","edrfleet.agent"):
    m=types.ModuleType(n);m.__path__=[];sys.modules[n]=m
sys.modules["edrfleet"].__version__=v
for n,code in src:
    m=types.ModuleType(n);m.__file__="<edrfleet-reader>";sys.modules[n]=m
    exec(compile(code,n,"exec"),m.__dict__)
    setattr(sys.modules[n.rpartition(".")[0]],n.rpartition(".")[2],m)
import argparse
pull=sys.modules["edrfleet.agent.pull"]
p=argparse.ArgumentParser(prog="edrfleet-pull")
pull.add_pull_arguments(p)
sys.exit(pull.main(p.parse_args()))
"""


def _source(module: str) -> str:
    package, _, name = module.rpartition(".")
    return resources.files(package).joinpath(f"{name}.py").read_text(encoding="utf-8")


@functools.cache
def boot() -> str:
    """The program ``python3 -`` runs on the host (built once per controller run)."""
    payload = json.dumps([__version__, [[m, _source(m)] for m in MODULES]])
    blob = base64.b64encode(zlib.compress(payload.encode("utf-8"), 9)).decode("ascii")
    return _BOOT.format(blob=blob)


def reader_input() -> bytes:
    """What the reader's command gets on its stdin: the program."""
    return boot().encode("utf-8")


def reader_argv(python: str, args: Sequence[str]) -> list[str]:
    """``python`` running the reader (from its stdin, :func:`reader_input`) with ``args``
    (``edrfleet.agent.pull``'s arguments)."""
    return [python, "-", *args]
