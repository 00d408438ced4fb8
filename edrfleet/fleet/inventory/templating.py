"""Templated inventory values (``edrfleet_mode: "{{ my_mode }}"``), evaluated as Ansible does.

``ansible-inventory`` prints values as written; Ansible templates them when a play uses them.
edrfleet does the same at use: `Inventory.select` (deploy, status, uninstall, report) and
``policy render`` hand out hosts whose ``ansible_*`` and ``edrfleet_*`` variables -- the ones
edrfleet reads -- are templated; ``edrfleet inventory`` (``--list``/``--host``) still prints them as
written, as ansible-inventory does.  The semantics follow ansible-core 2.19:

- a template may use any variable of the host (inventory, group_vars, host_vars), which is
  itself templated when it is used (a chain ``a: "{{ b }}"``, ``b: "{{ c }}"`` resolves; a loop
  is an error), and the magic variables ``inventory_hostname``, ``inventory_hostname_short``,
  ``group_names``, ``groups``, ``hostvars`` (another host's variables, templated for that
  host), ``inventory_dir`` and ``inventory_file``;
- a template that is one expression keeps its type (``"{{ 3 }}"`` is 3, ``"{{ [a, b] }}"`` a
  list), text around it makes a string; lists and mappings are templated item by item;
- a value is templated once, never twice: what a template returns is not templated again, and
  ``!unsafe`` values are never templated (a ``{{`` there, or from a template's result, stays
  literal text);
- an undefined variable is an error naming the host, the variable and the file that set it
  (``default``/``is defined`` handle undefined values as in Ansible); the usual filters are
  there: Jinja's own plus ``bool``, ``ternary``, ``mandatory``, ``to_json``, ``from_json``,
  ``to_yaml``, ``regex_replace``, ``regex_search``, ``basename``, ``dirname``, ``combine``,
  ``dict2items``, ``items2dict``, ``quote``, ``b64encode``, ``b64decode``, ``split``.

Where edrfleet differs: variables it does not read are templated only when a template uses
them (Ansible: only when a task uses them), so an undefined name in a variable nobody uses is
no error in either; lookups (``lookup()``, ``query()``) and Ansible plugins are not available.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.nativetypes import NativeCodeGenerator, NativeEnvironment, NativeTemplate
from jinja2.runtime import Context, Undefined
from jinja2.utils import missing

from edrfleet.errors import InputError
from edrfleet.fleet.config import TRUE_WORDS
from edrfleet.fleet.inventory.yaml_lines import Unsafe

MARKERS = ("{{", "{%", "{#")
READ = ("ansible_", "edrfleet_")  # the variables edrfleet itself reads


class TemplateVarError(InputError, ValueError):
    """A variable's template failed; `Inventory` adds the file that set it."""

    def __init__(self, host: str, var: str, why: str) -> None:
        self.host, self.var, self.why = host, var, why
        super().__init__(f"{host}: {var}: {why}")


def _concat(values: Iterator[Any]) -> Any:
    """One expression keeps its value; text around it joins as a string (no literal_eval of
    strings, unlike Jinja's NativeEnvironment: ``"{{ '1' }}"`` stays the string '1')."""
    head = list(values)
    if not head:
        return ""
    if len(head) == 1:
        return head[0]
    return "".join(str(v) for v in head)


class _CodeGenerator(NativeCodeGenerator):
    """Constant output folded at compile time without literal_eval either."""

    @staticmethod
    def _output_const_repr(group: Any) -> str:
        return repr(_concat(iter(group)))


class _LazyContext(Context):
    """Looks a name up through the host's resolver when the template has not set it."""

    def resolve_or_missing(self, key: str) -> Any:
        if key in self.vars:
            return self.vars[key]
        resolver = self.parent.get("__edrfleet_resolver__")
        if resolver is not None and key != "__edrfleet_resolver__":
            value = resolver.lookup(key)
            if value is not missing:
                return value
        return self.parent.get(key, missing)


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in TRUE_WORDS
    return bool(v)


def _mandatory(v: Any, msg: str | None = None) -> Any:
    if isinstance(v, Undefined):
        raise UndefinedError(msg or f"Mandatory variable {v._undefined_name!r} not defined.")
    return v


def _combine(*dicts: Any, recursive: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in dicts:
        for k, v in d.items():
            if recursive and isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = _combine(out[k], v, recursive=True)
            else:
                out[k] = v
    return out


def _regex_search(value: str, pattern: str, ignorecase: bool = False) -> Any:
    m = re.search(pattern, value, re.I if ignorecase else 0)
    return m.group(0) if m else None


FILTERS: dict[str, Callable[..., Any]] = {
    "bool": _bool,
    "ternary": lambda v, a, b, none=None: (none if v is None and none is not None
                                           else a if v else b),
    "mandatory": _mandatory,
    "to_json": lambda v, **kw: json.dumps(v, **kw),
    "to_nice_json": lambda v, indent=4: json.dumps(v, indent=indent, sort_keys=True),
    "from_json": json.loads,
    "to_yaml": lambda v, **kw: yaml.safe_dump(v, **kw),
    "from_yaml": yaml.safe_load,
    "regex_replace": lambda v, pat="", rep="", ignorecase=False: re.sub(
        pat, rep, v, flags=re.I if ignorecase else 0),
    "regex_search": _regex_search,
    "basename": os.path.basename,
    "dirname": os.path.dirname,
    "combine": _combine,
    "dict2items": lambda d: [{"key": k, "value": v} for k, v in d.items()],
    "items2dict": lambda items, key_name="key", value_name="value": {
        i[key_name]: i[value_name] for i in items},
    "quote": lambda v: shlex.quote(str(v)),
    "b64encode": lambda v: base64.b64encode(str(v).encode()).decode(),
    "b64decode": lambda v: base64.b64decode(str(v)).decode(),
    "split": lambda v, sep=None, maxsplit=-1: v.split(sep, maxsplit),
}


class _Environment(NativeEnvironment):
    """Native types (Ansible 2.19 keeps a lone expression's type), our concat, lazy names."""

    concat = staticmethod(_concat)  # type: ignore[assignment]
    code_generator_class = _CodeGenerator
    context_class = _LazyContext


class _Template(NativeTemplate):
    environment_class = _Environment  # its concat is the one render() calls


_Environment.template_class = _Template


def _environment() -> _Environment:
    env = _Environment(undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters.update(FILTERS)
    env.tests.update({"truthy": _bool, "falsy": lambda v: not _bool(v)})
    return env


ENV = _environment()


def is_template(value: Any) -> bool:
    return isinstance(value, str) and not isinstance(value, Unsafe) and \
        any(m in value for m in MARKERS)


class HostResolver:
    """The variables of one host, each templated at most once, when first used."""

    def __init__(self, name: str, raw: Mapping[str, Any], magic: Mapping[str, Any],
                 others: Callable[[str], HostResolver | None]) -> None:
        self.name, self.raw, self.magic, self.others = name, raw, magic, others
        self._done: dict[str, Any] = {}
        self._busy: list[str] = []

    def lookup(self, key: str) -> Any:
        """The templated value of ``key`` (``missing`` when the host has no such variable)."""
        if key in self._done:
            return self._done[key]
        if key == "hostvars":
            return _HostVars(self.others)
        if key not in self.raw:
            return self.magic.get(key, missing)
        if key in self._busy:
            chain = " -> ".join([*self._busy[self._busy.index(key):], key])
            raise TemplateVarError(self.name, self._busy[0],
                                   f"recursive loop in its templates ({chain})")
        self._busy.append(key)
        try:
            value = self.template(self.raw[key])
        except TemplateVarError:
            raise
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
            # the innermost variable whose own template failed is the one to fix
            raise TemplateVarError(self.name, key, _why(exc)) from None
        finally:
            self._busy.pop()
        self._done[key] = value
        return value

    def template(self, value: Any) -> Any:
        """One value templated once: strings with markers rendered, containers item by item,
        ``!unsafe`` and everything else as it is."""
        if isinstance(value, Unsafe):
            return str(value)
        if is_template(value):
            result = ENV.from_string(value).render({"__edrfleet_resolver__": self})
            if isinstance(result, Undefined):
                result._fail_with_undefined_error()
            return result
        if isinstance(value, dict):
            return {k: self.template(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.template(v) for v in value]
        return value

    def resolved(self) -> dict[str, Any]:
        """The host's variables with those edrfleet reads templated."""
        return {k: (self.lookup(k) if isinstance(k, str) and k.startswith(READ) else v)
                for k, v in self.raw.items()}


class _HostVars(Mapping[str, Any]):
    """``hostvars``: every host's variables, templated for that host when used."""

    def __init__(self, others: Callable[[str], HostResolver | None]) -> None:
        self.others = others

    def __getitem__(self, name: str) -> Mapping[str, Any]:
        r = self.others(name)
        if r is None:
            raise KeyError(name)
        return _Vars(r)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _Vars(Mapping[str, Any]):
    def __init__(self, r: HostResolver) -> None:
        self.r = r

    def __getitem__(self, key: str) -> Any:
        value = self.r.lookup(key)
        if value is missing:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter([*self.r.raw, *self.r.magic])

    def __len__(self) -> int:
        return len(self.r.raw) + len(self.r.magic)


def _why(exc: BaseException) -> str:
    if isinstance(exc, UndefinedError):
        return f"template error: {exc.message}"
    if isinstance(exc, TemplateError):
        return f"template error: {exc.message or type(exc).__name__}"
    return f"template error: {exc}"

