"""Read a compiled policy bundle on the host (stdlib only: the agent cannot import the compiler).

The canonical form and checksum are those of ``edrfleet.policy.bundle``; a unit test checks
that both sides compute the same sha256 for the same bundle.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FORMAT = "edrfleet-bundle"
VERSION = 1
VERSIONS = (1, 2, 3)  # 2: with a prefilter (executables.prefilter); 3: with cwd_classes


class BundleError(ValueError):
    """The file is not a bundle this agent can load; the message names the file and the fix."""


def canonical_sha256(bundle: dict) -> str:
    body = {k: v for k, v in bundle.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical_text_matches(text: str, sha: object) -> bool:
    """The cheap check for a file written canonically (``dump_bundle``): the text less its
    ``"sha256"`` member then is the canonical body itself, so hashing it verifies the content
    without serializing 1.4 MB of JSON again (25 ms of every agent start).  Any other file
    (reformatted, edited) misses here and gets the full check."""
    if not isinstance(sha, str):
        return False
    member = f',"sha256":"{sha}"'
    body = text[:-1] if text.endswith("\n") else text
    if body.count(member) != 1:
        return False
    return hashlib.sha256(body.replace(member, "", 1).encode()).hexdigest() == sha


def read_bundle(path: Path) -> dict:
    """Parse and check a bundle file: format, version and sha256 must all hold."""
    try:
        text = Path(path).read_text()
        bundle = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(
            f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg}); the agent loads a compiled "
            "bundle (edrfleet policy compile POLICY.yaml -o FILE)"
        ) from exc
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise BundleError(f"{path}: not an edrfleet bundle (format {FORMAT!r} expected)")
    if bundle.get("version") not in VERSIONS:
        raise BundleError(
            f"{path}: bundle version {bundle.get('version')!r}, this agent reads "
            f"{' and '.join(map(str, VERSIONS))}; "
            "deploy a matching agent"
        )
    sha = bundle.get("sha256")
    if not _canonical_text_matches(text, sha) and sha != canonical_sha256(bundle):
        raise BundleError(f"{path}: sha256 does not match the content (truncated or edited?)")
    return bundle
