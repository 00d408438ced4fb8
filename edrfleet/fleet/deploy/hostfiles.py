"""The host-side scripts as shipped files: ``host/*.sh`` and ``host/facts.py`` beside this module.

Read with importlib.resources, so an installed package (pyproject.toml ships them as package
data) finds them as a checkout does.  The scripts expect a generated, quoted preamble of
variables before them (hostscripts.py, facts.py): nothing from the inventory is in these files.
"""

from __future__ import annotations

import functools
from importlib import resources

SCRIPTS = ("common.sh", "dirs.sh", "apply.sh", "rollback.sh", "uninstall.sh", "facts.sh",
           "facts.py")


@functools.cache
def host_file(name: str) -> str:
    """The text of one host script (``apply.sh``, ``facts.py``, ...)."""
    if name not in SCRIPTS:
        raise KeyError(f"no host script {name!r} (have {', '.join(SCRIPTS)})")
    return resources.files(__package__).joinpath("host", name).read_text(encoding="utf-8")
