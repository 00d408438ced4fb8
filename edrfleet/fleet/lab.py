"""The lab fleet: what every lab host (and the demo) gets on top of the default policy."""

from __future__ import annotations

# Blocks a recursive rm of /tmp/edrfleet-canary*: the harmless target of every demo attack.
LAB_CANARY_RULE = {
    "id": "lab-canary",
    "description": "recursive delete of an edrfleet canary",
    "severity": "critical",
    "action": "block",
    "match": {
        "executable": ["rm"],
        "args": [{"regex": "^(-[a-zA-Z]*[rR][a-zA-Z]*|--recursive)$"},
                 {"glob": "/tmp/edrfleet-canary*"}],
    },
}
