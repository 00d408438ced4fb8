"""Render per-host files (the policy, the systemd unit) from the Jinja templates in templates/.

Templates run with StrictUndefined: a variable a template uses without a default and the host
does not define is an error naming the template and line, never an empty string.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2

from edrfleet import paths
from edrfleet.errors import InputError

TEMPLATES = paths.TEMPLATES
POLICY_TEMPLATE = "policy.yaml.j2"
UNIT_TEMPLATE = "edrfleet-agent.service.j2"


class RenderError(InputError, ValueError):
    """A template failed for a host; the message names the host, template and line."""


@functools.lru_cache(maxsize=8)  # parsing the policy template takes ~0.1 s; rendering 1 ms
def environment(template_dir: Path = TEMPLATES) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # renders YAML and unit files, not HTML
    )


def render(name: str, variables: dict[str, Any], *, host: str = "localhost",
           template_dir: Path = TEMPLATES) -> str:
    """Render template ``name`` with ``variables``; raises RenderError with host:template:line."""
    env = environment(template_dir)
    try:
        return env.get_template(name).render(**variables)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{template_dir / name}:{exc.lineno}: {exc.message} (host {host})") \
            from exc
    except jinja2.UndefinedError as exc:
        line = _template_line(exc, name)
        raise RenderError(
            f"{template_dir / name}:{line}: {exc.message} for host {host} (fix: define it in "
            "the host's or a group's vars, or give it a default in the template)"
        ) from exc


def _template_line(exc: BaseException, name: str) -> str:
    tb = exc.__traceback__
    line = "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(name):
            line = str(tb.tb_lineno)
        tb = tb.tb_next
    return line


def render_policy(variables: dict[str, Any], *, host: str = "localhost") -> str:
    return render(POLICY_TEMPLATE, variables, host=host)
