"""The exit statuses of the `edrfleet` command, in one place for main and every subcommand."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and something failed (a host, a check)
EXIT_USAGE = 2  # bad input: arguments, files, policy
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as a shell reports it
