"""edrfleet.policy: policy schema, compiler to the kernel bundle, simulator, reference oracle.

Imports nothing else of edrfleet but the errors' root, `edrfleet.errors` (stdlib + pyyaml only;
the `sigma` subpackage, loaded only by the Sigma import, adds pySigma).  See
docs/policy-bundle.md.
"""

from edrfleet.policy.bundle import bundle_sha256, dump_bundle, load_bundle
from edrfleet.policy.compile import compile_policy
from edrfleet.policy.decision import Decision
from edrfleet.policy.errors import PolicyError, PolicyErrors
from edrfleet.policy.loader import load_policy, load_policy_text
from edrfleet.policy.model import ArgMatcher, Policy, Rule
from edrfleet.policy.reference import reference_decide
from edrfleet.policy.simulate import simulate

__all__ = [
    "ArgMatcher",
    "Decision",
    "Policy",
    "PolicyError",
    "PolicyErrors",
    "Rule",
    "bundle_sha256",
    "compile_policy",
    "dump_bundle",
    "load_bundle",
    "load_policy",
    "load_policy_text",
    "reference_decide",
    "simulate",
]
