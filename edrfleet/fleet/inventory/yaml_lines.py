"""YAML for inventories: plain Python values whose mappings remember where they were written.

Every mapping is a `LineDict` (a ``dict``) with ``line`` (where the mapping starts) and
``key_lines`` (the line of each key), so inventory errors can say ``FILE:LINE``. A key written
twice in one mapping is an error (Ansible warns and keeps the last one, which is nearly always a
typo). ``!unsafe`` (Ansible: "never template this") reads as an `Unsafe` string; ``!vault`` is
refused with the fix, since edrfleet does not decrypt vaults.

>>> data = load_yaml_text("all:\\n  hosts:\\n    web1:\\n", "inv.yml")
>>> data["all"].key_lines["hosts"], data["all"]["hosts"].key_lines["web1"]
(2, 3)
"""

from __future__ import annotations

from typing import Any

import yaml

from edrfleet.errors import InputError

_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present
_MERGE_TAG = "tag:yaml.org,2002:merge"

_SYNTAX_FIXES = (
    ("found character '\\t'", "indent with spaces, not tabs"),
    ("mapping values are not allowed", "quote the value (it contains ': ') or fix the indentation"),
    ("expected a single document", "keep one YAML document per file (remove the extra '---')"),
    ("while parsing a block", "check the indentation of this line and the one above"),
    ("found undefined alias", "define the anchor (&name) before using *name"),
    ("could not determine a constructor", "remove the tag or quote the value"),
)


class YamlError(InputError, ValueError):
    """One problem at ``source:line`` with a fix; `inventory.InventoryError` subclasses it."""

    def __init__(self, message: str, *, source: str, line: int = 0,
                 fix: str | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.fix = fix
        super().__init__(self.format())

    def format(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        text = f"{where}: {self.message}"
        return f"{text} (fix: {self.fix})" if self.fix else text

    def __str__(self) -> str:
        return self.format()


class Unsafe(str):
    """A ``!unsafe`` string: Ansible never templates it; it behaves as a plain ``str``."""

    __slots__ = ()


class LineDict(dict):
    """A mapping read from YAML: ``line`` of the mapping, ``key_lines[key]`` of each key."""

    __slots__ = ("line", "key_lines")

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


class _Loader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    source = "<string>"


class _SlowLoader(yaml.SafeLoader):
    """Only to word a syntax error: pure-Python PyYAML says more than libyaml."""

    source = "<string>"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Any:
    data = LineDict(node.start_mark.line + 1)
    yield data
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            continue
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise YamlError(f"key {key!r} is written twice in this mapping (first on line "
                            f"{seen[key]})", source=loader.source, line=line,
                            fix="keep one of them; a host in several groups goes under each group")
        seen[key] = line
    loader.flatten_mapping(node)  # '<<' merge keys first, the mapping's own keys override them
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise YamlError("a mapping key must be a plain value, not a list or a mapping",
                            source=loader.source, line=key_node.start_mark.line + 1,
                            fix="quote the key") from None
        data.key_lines[key] = key_node.start_mark.line + 1
        data[key] = loader.construct_object(value_node, deep=True)


def _construct_unsafe(loader: _Loader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return Unsafe(loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return dict(loader.construct_mapping(node, deep=True))


def _refuse_vault(loader: _Loader, node: yaml.Node) -> Any:
    raise YamlError("an Ansible Vault value (!vault) cannot be read by edrfleet",
                    source=loader.source, line=node.start_mark.line + 1,
                    fix="decrypt it into a file only root can read, or set it in the environment")


for _cls in (_Loader, _SlowLoader):
    _cls.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
    _cls.add_constructor("!unsafe", _construct_unsafe)
    _cls.add_constructor("!vault", _refuse_vault)


def _syntax_error(exc: yaml.YAMLError, source: str) -> YamlError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    text = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    fix = "check the indentation and quoting around this line"
    full = f"{context or ''} {problem}"
    for needle, hint in _SYNTAX_FIXES:
        if needle in full:
            fix = hint
            break
    return YamlError(text, source=source, line=mark.line + 1 if mark else 1, fix=fix)


def load_yaml_text(text: str, source: str) -> Any:
    """One YAML document as Python values (mappings as `LineDict`); None when empty.

    Raises:
        YamlError: a syntax error, a duplicate key, an unsupported tag (``source:line``).
    """
    try:
        return _load(_Loader, text, source)
    except yaml.YAMLError as fast_exc:
        error = fast_exc
    try:
        _load(_SlowLoader, text, source)
    except yaml.YAMLError as slow_exc:
        error = slow_exc
    raise _syntax_error(error, source)


def _load(cls: type, text: str, source: str) -> Any:
    loader = cls(text)
    loader.source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml_file(path: str) -> Any:
    """`load_yaml_text` of a UTF-8 file (OSError when it cannot be read)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=path,
                        line=raw.count(b"\n", 0, exc.start) + 1, fix="save the file as UTF-8",
                        ) from None
    return load_yaml_text(text, path)


def plain(value: Any) -> Any:
    """A copy of ``value`` with every `LineDict` turned into a plain ``dict``."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
