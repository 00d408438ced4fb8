"""Where the product's own files are: the one place that knows both layouts.

edrfleet runs from a checkout (``make setup``: an editable install) or installed like any Python
tool (``pip install`` / ``pipx install`` of the wheel).  What it reads besides its modules --
``bpf/`` (the BPF program), ``templates/`` (policy and unit templates) and the Ansible role
``roles/edrfleet_agent`` -- is package data of the wheel under ``edrfleet/data/`` (copied there
by ``setup.py`` when the wheel is built, symlinks followed), found with ``importlib.resources``;
in a checkout, where ``edrfleet/data/`` does not exist, it is the source tree's own directories.
Both hold the same bytes, so a release built either way has the same id.

State is never written into the package: in a checkout it goes under ``<checkout>/.edrfleet``
(as always); installed, under ``.edrfleet`` of the working directory, like the report store's
default ``.edrfleet/report.db``.  ``EDRFLEET_STATE_DIR`` overrides both.

``edrfleet paths [role|bpf|templates|state]`` prints them (edrfleet/cli/paths_cmd.py).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# The package data of an installed wheel; absent in a checkout (setup.py makes it in the wheel).
DATA = Path(str(resources.files("edrfleet") / "data"))
INSTALLED = DATA.is_dir()
# The checkout (or, installed, the directory that holds the package: an identity only, never
# read from or written to).
REPO = PACKAGE.parent
_ROOT = DATA if INSTALLED else REPO
TEMPLATES = _ROOT / "templates"
BPF = _ROOT / "bpf"
ROLE = _ROOT / "roles" / "edrfleet_agent"
SCRIPTS = REPO / "scripts"  # checkout only: setup and VM image scripts are not shipped
STATE = Path(os.environ.get("EDRFLEET_STATE_DIR")
             or (Path.cwd() / ".edrfleet" if INSTALLED else REPO / ".edrfleet"))
