"""Where the product's own files are: the one place that knows the source tree's layout.

``REPO`` is the checkout edrfleet runs from; ``templates/``, ``bpf/`` and ``scripts/`` live
there, and lab state goes under ``REPO/.edrfleet`` unless a directory is given.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent
TEMPLATES = REPO / "templates"
BPF = REPO / "bpf"
SCRIPTS = REPO / "scripts"
STATE = REPO / ".edrfleet"
