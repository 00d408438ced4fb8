#!/usr/bin/env python3
"""How many executables of this host the kernel's copy test would take for a protected file
(bpf/identity.c): those sharing a protected file's size, and those sharing its size and head
(the first 256 bytes) - the key the kernel uses - without being that file.

The protected files are those the default policy names, resolved through its search path as
the agent does.  Reads files only; needs no root.

Usage: .venv/bin/python bench/size_namesakes.py [DIR ...]   (default: /usr)
"""

from __future__ import annotations

import filecmp
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edrfleet.agent.identity.content import head_hash_path  # noqa: E402
from edrfleet.agent.identity.keeper import named_paths  # noqa: E402
from edrfleet.fleet.deploy.render import render_policy  # noqa: E402
from edrfleet.policy import compile_policy, load_policy_text  # noqa: E402


def main() -> int:
    roots = sys.argv[1:] or ["/usr"]
    bundle = compile_policy(load_policy_text(render_policy({}), "default-policy.yaml"))
    protected: dict[tuple[int, int], str] = {}
    for path in named_paths(bundle):
        try:
            st = os.stat(path)
        except OSError:
            continue
        protected.setdefault((st.st_dev, st.st_ino), path)
    by_size = {os.stat(p).st_size: p for p in protected.values()}
    by_key = {(os.stat(p).st_size, head_hash_path(p)): p for p in protected.values()}
    scanned, size_only, key = 0, [], []
    for root in roots:
        for directory, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(directory, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if not os.path.isfile(path) or not st.st_mode & 0o111:
                    continue
                scanned += 1
                if (st.st_dev, st.st_ino) in protected or st.st_size not in by_size:
                    continue
                size_only.append((path, by_size[st.st_size]))
                twin = by_key.get((st.st_size, head_hash_path(path)))
                if twin:
                    key.append((path, twin, filecmp.cmp(path, twin, shallow=False)))
    print(f"protected files: {len(protected)} ({len(by_size)} sizes); executables under "
          f"{', '.join(roots)}: {scanned}")
    print(f"same size as a protected file: {len(size_only)}, e.g. "
          + ", ".join(f"{Path(a).name} ~ {Path(b).name}" for a, b in size_only[:6]))
    print(f"same size and head (judged as it by the kernel): {len(key)}")
    for path, twin, same in key:
        print(f"  {path} ~ {twin}: {'byte-identical (a copy)' if same else 'ANOTHER PROGRAM'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
