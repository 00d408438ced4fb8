"""Where the optional test corpora are (docs/corpora.md): ``EDRFLEET_CORPUS`` if set, else a
``shared/corpus`` folder beside the checkout.  Tests that need them skip, naming this path."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def corpus_dir() -> Path:
    env = os.environ.get("EDRFLEET_CORPUS")
    return Path(env).resolve() if env else (REPO.parent / "shared" / "corpus").resolve()


CORPUS = corpus_dir()
SIGMA = CORPUS / "sigma_linux_process_creation"
