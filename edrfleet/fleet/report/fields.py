"""Which event field fills which column of the report store: the one place both backends read.

Each column maps to the places the field may sit in the event's JSON object, each a tuple of
keys: the nested ECS path (``("event", "id")``), then the flat dotted key older agents wrote
(``("event.id",)``), as :func:`edrfleet.agent.ecs.key_paths` gives them.  The SQLite backend
turns a path into a ``json_extract`` path, the PostgreSQL one into a ``->``/``->>`` chain, and
both take the first that is present (``coalesce``: a current event costs one lookup); neither
names a field itself.
"""

from __future__ import annotations

from edrfleet.agent import ecs

Path = tuple[str, ...]

# column -> the paths of the event field it holds (``raw`` keeps the whole line besides)
COLUMNS: dict[str, tuple[Path, ...]] = {
    "id": ecs.key_paths(ecs.EVENT_ID),
    "ts": ecs.key_paths(ecs.TIMESTAMP),  # ISO 8601 text in the event, epoch seconds stored
    "action": ecs.key_paths(ecs.ACTION),
    "rule": ecs.key_paths(ecs.RULE_ID),
    "severity": ecs.key_paths(ecs.SEVERITY),
    "cmdline": ecs.key_paths(ecs.COMMAND_LINE),
}


def first_of(sqls: list[str]) -> str:
    """SQL for the first non-NULL of several extractions."""
    return sqls[0] if len(sqls) == 1 else f"coalesce({', '.join(sqls)})"


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
