"""Which event field fills which column of the report store: the one place both backends read.

Each column maps to the field's path in the event's JSON object, as a tuple of keys: today's
events use flat dotted keys (one key each, ``("event.id",)``); nested ECS objects are a path
of several (``("event", "id")``).  The SQLite backend turns a path into a ``json_extract``
path, the PostgreSQL one into a ``->``/``->>`` chain; neither names a field itself.
"""

from __future__ import annotations

from edrfleet.agent import ecs

Path = tuple[str, ...]

# column -> path of the event field it holds (``raw`` keeps the whole line besides)
COLUMNS: dict[str, Path] = {
    "id": (ecs.EVENT_ID,),
    "ts": (ecs.TIMESTAMP,),  # ISO 8601 text in the event, epoch seconds in the store
    "action": (ecs.ACTION,),
    "rule": (ecs.RULE_ID,),
    "severity": (ecs.SEVERITY,),
    "cmdline": (ecs.COMMAND_LINE,),
}


def sqlite_path(path: Path) -> str:
    """``path`` as a SQLite JSON path literal's text: ``$."event"."id"``."""
    return "$" + "".join('."' + key.replace('"', '\\"') + '"' for key in path)


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal (the paths are ours, but quote them properly)."""
    return "'" + text.replace("'", "''") + "'"


def postgres_path(column: str, path: Path) -> str:
    """``path`` read from the jsonb ``column`` as text: ``j->'event'->>'id'``."""
    *parents, last = path
    return column + "".join(f"->{sql_string(k)}" for k in parents) + f"->>{sql_string(last)}"
