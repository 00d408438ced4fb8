"""Sigma import: a pySigma backend and processing pipeline that turn Sigma process-creation
rules into edrfleet rules (docs/sigma.md).

Imports pySigma, so it is loaded only by ``edrfleet policy import-sigma`` and its tests; the
rest of `edrfleet.policy` does not depend on it.
"""

from edrfleet.policy.sigma.importer import (
    Imported,
    ImportResult,
    Refused,
    import_paths,
    import_texts,
    sigma_files,
)

__all__ = ["ImportResult", "Imported", "Refused", "import_paths", "import_texts", "sigma_files"]
