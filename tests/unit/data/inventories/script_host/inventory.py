#!/usr/bin/env python3
"""An old-style inventory script: no _meta, so --host is run for every host."""
import json
import sys

HOSTS = {"a1": {"x": 1}, "a2": {"x": 2, "ansible_port": 2201}, "b1": {}}
if sys.argv[1:] == ["--list"]:
    print(json.dumps({
        "alpha": ["a1", "a2"],
        "beta": {"hosts": ["b1"], "vars": {"y": True}, "children": ["alpha"]},
        "all": {"vars": {"z": "all"}},
    }))
elif sys.argv[1] == "--host":
    print(json.dumps(HOSTS.get(sys.argv[2], {})))
