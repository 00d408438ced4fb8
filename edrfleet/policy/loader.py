"""Read a policy file into YAML nodes that remember their line and column.

`load_policy` / `load_policy_text` are the public entry points; the shape is checked by
`edrfleet.policy.schema`.

>>> load_policy_text("version: 1\\nrules: []\\n").rules
()
"""

from __future__ import annotations

import os

import yaml

from edrfleet.policy.errors import PolicyError
from edrfleet.policy.schema import Policy, validate

_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present

_SYNTAX_FIXES = (
    ("found character '\\t'", "indent with spaces, not tabs"),
    ("mapping values are not allowed", "quote the value (it contains ': ') or fix the indentation"),
    ("found unknown escape character", "use single quotes for regexes ('\\d'), or double the "
                                       "backslash inside double quotes (\"\\\\d\")"),
    ("expected a single document", "keep one document per policy file (remove '---')"),
    ("while parsing a block", "check the indentation of this line and the one above"),
    ("found undefined alias", "define the anchor (&name) before using *name"),
)


def _syntax_error(exc: yaml.YAMLError, source: str) -> PolicyError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    text = f"YAML syntax error: {problem}"
    if context:
        text += f" ({context})"
    fix = "check the indentation and quoting around this line"
    full = f"{context or ''} {problem}"
    for needle, hint in _SYNTAX_FIXES:
        if needle in full:
            fix = hint
            break
    line = mark.line + 1 if mark is not None else 1
    col = mark.column + 1 if mark is not None else 1
    return PolicyError(text, source=source, line=line, col=col, fix=fix)


def compose(text: str, source: str = "<string>") -> yaml.Node:
    """Parse YAML text into a node tree (one document), as a `PolicyError` on failure."""
    try:
        node = yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError as fast_exc:
        error = fast_exc
        try:  # the pure-Python loader words its errors the same everywhere
            yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as slow_exc:
            error = slow_exc
        raise _syntax_error(error, source) from None
    if node is None:
        raise PolicyError(
            "the policy is empty", source=source, line=1, col=1,
            fix="start with 'version: 1' and a 'rules:' list",
        )
    return node


def load_policy_text(text: str, source: str = "<string>") -> Policy:
    """Validate policy YAML text and return the `Policy`.

    Raises:
        PolicyError: one problem (``file:line:col: message (fix: ...)``).
        PolicyErrors: several problems; ``.errors`` lists each.
    """
    return validate(compose(text, source), source, text)


def read_policy_file(path: str | os.PathLike[str]) -> str:
    """The text of a policy file (YAML or bundle JSON).

    Raises:
        PolicyError: it cannot be read, or is not UTF-8 (naming the file, the line and column
            of the first bad byte, and a fix).
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise PolicyError(f"cannot read the policy: {exc.strerror or exc}", source=source,
                          fix="give the path of a readable policy YAML or bundle JSON file"
                          ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start:exc.end].hex(" ")
        binary = b"\0" in data[:8192]
        raise PolicyError(
            f"not UTF-8 text: byte {bad} ({exc.reason})" + (
                "; the file looks binary, not a policy" if binary else ""),
            source=source, line=line, col=col,
            fix="give a policy YAML or bundle JSON file" if binary else
            "save the policy as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file.

    Raises:
        OSError: the file cannot be read.
        PolicyError / PolicyErrors: see `load_policy_text` (or the file is not UTF-8).
    """
    return load_policy_text(read_policy_file(path), os.fspath(path))
