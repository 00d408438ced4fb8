"""The corpus argv model now lives in `edrfleet.policy.shell.argv` (the CLI's ``policy test
--corpus`` uses it); this module keeps the old import path for tests and benches."""

from edrfleet.policy.shell.argv import BUILTINS, SHELLS, exec_argvs, simple_commands

__all__ = ["exec_argvs", "simple_commands", "SHELLS", "BUILTINS"]
