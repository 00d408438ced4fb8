"""The processing pipeline: Sigma's Linux process-creation fields to what the kernel sees.

pySigma applies it to each rule before the backend converts the condition, so the backend only
meets the names on the right below (or a field it must refuse, with the reason in
`UNSUPPORTED_FIELDS`).

| Sigma field (process_creation) | edrfleet          | seen by the kernel at exec               |
|---|---|---|
| ``Image``                      | ``executable``    | ``mm->exe_file``: basename and inode     |
| ``CommandLine``                | ``cmdline``       | argv joined by single spaces             |
| ``ParentImage``                | ``parent``        | ``real_parent->mm->exe_file``            |
| ``User``                       | ``user``          | the exec's uid (names resolved per host) |
| ``CurrentDirectory``           | ``cwd``           | the working directory (prefixes)         |
| auditd ``a0`` … ``a9``         | ``argv.0`` …      | argv[i] of the EXECVE record             |
| auditd ``type``                | ``auditd.type``   | EXECVE is every exec; other records not  |
| auditd ``SYSCALL``             | ``auditd.syscall``| execve/execveat: a SYSCALL record of one |
| auditd ``euid``                | ``euid``          | matched as the exec's (real) uid         |
"""

from __future__ import annotations

from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation

FIELDS = {
    "Image": "executable",
    "CommandLine": "cmdline",
    "ParentImage": "parent",
    "User": "user",
    "CurrentDirectory": "cwd",
    "type": "auditd.type",
    "SYSCALL": "auditd.syscall",
    "euid": "euid",
    **{f"a{i}": f"argv.{i}" for i in range(10)},
}

_PARENT_ARGV = ("the kernel sees the parent's executable at exec, not its argv (another "
                "process's memory cannot be read there)")
_AUDIT_RECORD = "an auditd record field other than EXECVE's arguments; the kernel sees only execs"
UNSUPPORTED_FIELDS = {
    "ParentCommandLine": _PARENT_ARGV,
    "ParentUser": "the parent's user is not known at exec",
    "OriginalFileName": "a Windows PE header field",
    "LogonId": "a login-session id the kernel does not see at exec",
    "ProcessId": "a process id is not known before the exec",
    "ParentProcessId": "process ids are not stable enough to match on",
    "exe": _AUDIT_RECORD,
    "comm": _AUDIT_RECORD,
    "name": _AUDIT_RECORD,
    "nametype": _AUDIT_RECORD,
    "key": "an auditd rule key (set by the auditd configuration, not by the exec)",
    "SYSCALL": "a syscall other than execve",
    "unit": "a systemd unit of a SERVICE_STOP record, not an exec",
    "euid": "the effective uid (the kernel matches the real uid)",
}


def edrfleet_pipeline() -> ProcessingPipeline:
    """The field mapping as a pySigma pipeline (priority 20, like other backends' pipelines)."""
    return ProcessingPipeline(
        name="edrfleet Linux exec fields",
        priority=20,
        items=[ProcessingItem(identifier="edrfleet_fields",
                              transformation=FieldMappingTransformation(dict(FIELDS)))],
    )
