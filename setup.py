"""The wheel's package data that lives outside the package in the source tree.

``bpf/``, ``templates/`` and ``roles/edrfleet_agent`` are copied into ``edrfleet/data/`` of the
built package (symlinks followed: the role's templates link into ``templates/``), where
``edrfleet/paths.py`` finds them with importlib.resources.  An editable install (``make
setup``) reads them in place, so nothing is copied then.  Everything else is pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
DATA = {"bpf": "bpf", "templates": "templates", "roles/edrfleet_agent": "roles/edrfleet_agent"}
# Never shipped: the role's molecule scenario boots VMs from a checkout only.
IGNORE = shutil.ignore_patterns("molecule", "__pycache__", "*.pyc", ".*")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for src, dst in DATA.items():
            target = Path(self.build_lib) / "edrfleet" / "data" / dst
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(HERE / src, target, symlinks=False, ignore=IGNORE)


setup(cmdclass={"build_py": BuildWithData})
