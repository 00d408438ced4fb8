"""One host's policy: templates/policy.yaml.j2 rendered with its variables and facts, validated
and compiled on the controller.

Compiling the default policy takes ~2 s, and a fleet renders it once per host, usually with
nothing but the scope differing.  Two caches keep deploys fast without trusting anything stale:

* on disk, keyed by sha256(compiler sources + rendered text): the same text compiled by the same
  compiler is the same bundle (a rerun with nothing changed compiles nothing);
* in memory and on disk, keyed by sha256(compiler sources + the policy minus its ``scope``):
  the scope only lands in ``bundle["scope"]`` (the kernel's cgroup filter), so hosts that
  differ by their cgroup share one compile, and the bundle's sha256 is computed over the
  host's own scope.

Cache files live in ``$XDG_CACHE_HOME/edrfleet/bundles`` (``EDRFLEET_NO_CACHE=1``: none).

Every host's text is still parsed and validated (``load_policy_text``) on a cache miss.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import yaml

from edrfleet import paths
from edrfleet.errors import InputError
from edrfleet.fleet.deploy.hostvars import check_policy_vars
from edrfleet.fleet.deploy.render import POLICY_TEMPLATE, TEMPLATES, render
from edrfleet.kernel_abi import HEADER_FILE
from edrfleet.policy import PolicyError, compile_policy, dump_bundle, load_bundle, load_policy_text
from edrfleet.policy.bundle import is_bundle_text
from edrfleet.policy.limits import EDR_POLICY_MAX_SCOPE
from edrfleet.policy.loader import read_policy_file

POLICY_DIR = paths.PACKAGE / "policy"


class HostPolicyError(InputError, ValueError):
    """A host's policy does not render, validate or compile; one line naming host, rule, fix."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(message)


class HostPolicy:
    """One host's rendered policy and compiled bundle.  From the disk cache the bundle is
    parsed only when asked for (deploy needs just the text and the sha256)."""

    def __init__(self, yaml_text: str, bundle: dict[str, Any] | None, bundle_json: str,
                 sha256: str = "") -> None:
        self.yaml_text = yaml_text      # the rendered policy (policy.yaml, shown by --diff)
        self.bundle_json = bundle_json  # dump_bundle(bundle): the bytes of policy.json
        self._bundle = bundle
        # the bundle's own sha256: what status.json reports once it is in force
        self.sha256 = sha256 or (bundle or {})["sha256"]

    @property
    def bundle(self) -> dict[str, Any]:
        if self._bundle is None:
            self._bundle = json.loads(self.bundle_json)
        return self._bundle

    @functools.cached_property
    def file_sha256(self) -> str:
        """sha256 of policy.json's bytes (what facts read on the host)."""
        return hashlib.sha256(self.bundle_json.encode()).hexdigest()


def template_vars(host_vars: dict[str, Any], name: str, facts: dict[str, Any] | None,
                  groups: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a template sees: the merged host variables, Ansible's magic names, the facts."""
    out = dict(host_vars)
    out.setdefault("inventory_hostname", name)
    out.setdefault("group_names", sorted(g for g in groups if g != "all"))
    out["edrfleet_facts"] = facts if facts is not None else {}
    return out


def render_host_policy(host_vars: dict[str, Any], name: str, facts: dict[str, Any] | None,
                       groups: tuple[str, ...] = (), template_dir: Path = TEMPLATES) -> str:
    variables = template_vars(host_vars, name, facts, groups)
    try:
        check_policy_vars(variables)
        return render(POLICY_TEMPLATE, variables, host=name, template_dir=template_dir)
    except ValueError as exc:
        raise HostPolicyError(name, f"host {name}: {exc}") from exc


class CompileCache:
    """Compiles rendered policies through the caches of the module docstring; thread-safe."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self._by_rules: dict[str, dict[str, str]] = {}  # rules key -> canonical fragments
        self._lock = threading.Lock()
        self._version = compiler_version()

    def compile(self, name: str, text: str) -> HostPolicy:
        try:
            body, sha = self.compile_text(text, f"host {name}: {POLICY_TEMPLATE} (rendered)")
        except PolicyError as exc:
            raise HostPolicyError(name, exc.format()) from exc
        return HostPolicy(text, None, body, sha)

    def compile_text(self, text: str, where: str, file_name: str = "policy.yaml"
                     ) -> tuple[str, str]:
        """(bundle text, its sha256) for a policy's YAML text, through the caches.  ``where``
        names the text in errors; ``file_name`` is the bundle's ``source`` (the file it was
        compiled from, as it is named on the host).

        Raises:
            PolicyError: the policy is invalid.
        """
        key = hashlib.sha256(self._version.encode() + b"\0" + file_name.encode() + b"\0"
                             + text.encode()).hexdigest()
        cached = self._read_disk(key)
        if cached is not None:
            return cached
        body, sha = self._compile_scoped(text, load_policy_text(text, where), file_name)
        self._write_disk(key, body, sha)
        return body, sha

    def _compile_scoped(self, text: str, policy: Any, file_name: str) -> tuple[str, str]:
        """The bundle's canonical text (dump_bundle's bytes) and sha256.  The canonical JSON
        of the shared part is made once per rule set (and kept on disk): a top-level object
        with sorted keys is its sorted "key":value fragments joined, so only scope, source and
        sha256 are new per host."""
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        rules_key = hashlib.sha256(self._version.encode() + b"\0" + json.dumps(
            {k: v for k, v in data.items() if k != "scope"}, sort_keys=True,
            default=str).encode()).hexdigest()
        with self._lock:
            fragments = self._by_rules.get(rules_key)
        if fragments is None:
            fragments = self._read_fragments(rules_key)
        if fragments is None:
            base = compile_policy(policy)
            fragments = {k: _canonical(v) for k, v in base.items() if k != "sha256"}
            self._write_disk(f"rules-{rules_key}", json.dumps(fragments), "-")
        with self._lock:
            self._by_rules[rules_key] = fragments
        cgroups = list(policy.scope_cgroups)
        if len(cgroups) > EDR_POLICY_MAX_SCOPE:
            raise PolicyError(f"{len(cgroups)} scope cgroups; the kernel holds "
                              f"{EDR_POLICY_MAX_SCOPE}",
                              source=policy.source, line=1, col=1, fix="split the policy")
        # "source" would carry the first host's name: every host's bundle names the file
        own = {"scope": {"cgroups": cgroups}, "source": file_name}
        fragments = fragments | {k: _canonical(v) for k, v in own.items()}
        sha = hashlib.sha256(_join(fragments).encode()).hexdigest()
        return _join(fragments | {"sha256": _canonical(sha)}) + "\n", sha

    def _read_fragments(self, rules_key: str) -> dict[str, str] | None:
        cached = self._read_disk(f"rules-{rules_key}")
        if cached is None:
            return None
        try:
            fragments = json.loads(cached[0])
        except ValueError:
            return None
        return fragments if isinstance(fragments, dict) else None

    def _read_disk(self, key: str) -> tuple[str, str] | None:
        """(bundle text, its sha256) — the sidecar is written last, so both or neither."""
        if self.cache_dir is None:
            return None
        try:
            sha = (self.cache_dir / f"{key}.sha256").read_text().strip()
            return (self.cache_dir / f"{key}.json").read_text(), sha
        except OSError:
            return None

    def _write_disk(self, key: str, body: str, sha: str) -> None:
        if self.cache_dir is None:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            for suffix, text in ((".json", body), (".sha256", sha + "\n")):
                tmp = self.cache_dir / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
                tmp.write_text(text)
                os.replace(tmp, self.cache_dir / f"{key}{suffix}")
        except OSError:
            pass  # a cache that cannot be written only costs time


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))  # edrfleet.policy.bundle's


def _join(fragments: dict[str, str]) -> str:
    return "{" + ",".join(f"{_canonical(k)}:{fragments[k]}" for k in sorted(fragments)) + "}"


def compiler_version() -> str:
    """sha256 over the policy compiler's sources and the kernel numbers it reads (the header,
    its parser): a changed compiler or kernel limit never reuses a bundle."""
    h = hashlib.sha256()
    for f in sorted(POLICY_DIR.rglob("*.py")):
        h.update(f.relative_to(POLICY_DIR).as_posix().encode() + b"\0" + f.read_bytes())
    for f in (paths.PACKAGE / "kernel_abi.py", paths.BPF / HEADER_FILE):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def default_cache_dir() -> Path | None:
    if os.environ.get("EDRFLEET_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edrfleet" / "bundles"


def host_policy(compiler: CompileCache, host_vars: dict[str, Any], name: str,
                facts: dict[str, Any] | None, groups: tuple[str, ...] = ()) -> HostPolicy:
    """Render, validate and compile one host's policy (HostPolicyError names host and fix)."""
    return compiler.compile(name, render_host_policy(host_vars, name, facts, groups))


def compile_file_cached(path: str,
                        compiler: CompileCache | None = None) -> tuple[str, dict[str, Any]]:
    """(bundle text, bundle) of a policy YAML or bundle JSON file.  YAML goes through the
    bundle cache `edrfleet deploy` uses (the role compiles every host's policy with this, via
    `edrfleet policy compile`: hosts that differ only in scope share one compile); a bundle is
    checked and written back in its canonical form."""
    text = read_policy_file(path)
    if is_bundle_text(text):
        bundle = load_bundle(text)
        return dump_bundle(bundle), bundle
    # compile_text's text is already dump_bundle's
    body = (compiler or CompileCache()).compile_text(text, path, os.path.basename(path))[0]
    return body, json.loads(body)
