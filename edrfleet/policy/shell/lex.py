"""A small POSIX-ish shell lexer: the simple commands of a command line (for `shell_argv`).

Splits on ``|``, ``|&``, ``;``, ``&``, ``&&``, ``||``, newlines, ``(``, ``)``; drops comments,
redirections and here-document bodies; removes quotes like a POSIX shell; command
substitutions ``$(…)``, backticks and ``<(…)`` are parsed as their own commands.  It only reads
text, nothing is run.
"""

from __future__ import annotations

import re

__all__ = ["simple_commands", "RESERVED_PREFIX", "MAX_DEPTH"]

RESERVED_PREFIX = frozenset(
    {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}",
     "esac", "time", "coproc"}
)
MAX_DEPTH = 8
_FD_WORD = re.compile(r"[0-9]+|\{[A-Za-z_][A-Za-z0-9_]*\}")
_REDIR_OP = re.compile(r"&>>|&>|<<<|<<-|<<|<>|<&|>&|>>|>\||<|>")
_DUP_TARGET = re.compile(r"[0-9]+-?|-")
_HEREDOC_DELIM = re.compile(r"[ \t]*(['\"]?)([^ \t\n;&|<>'\"]+)\1")



class _Parser:
    """A small POSIX-ish shell lexer that yields simple commands as word lists."""

    def __init__(self, text: str, depth: int) -> None:
        self.s = text
        self.i = 0
        self.depth = depth
        self.commands: list[list[str]] = []
        self.nested: list[str] = []  # bodies of $(…), `…`, <(…) to parse as commands
        self._words: list[str] = []
        self._word: list[str] = []
        self._in_word = False
        self._drop_next_word = False
        self._heredocs: list[tuple[str, bool]] = []

    # -- word and command boundaries -------------------------------------------------------
    def _end_word(self) -> None:
        if self._in_word:
            word = "".join(self._word)
            if self._drop_next_word:
                self._drop_next_word = False
            else:
                self._words.append(word)
        self._word = []
        self._in_word = False

    def _end_command(self) -> None:
        self._end_word()
        if self._words:
            self.commands.append(self._words)
        self._words = []
        self._drop_next_word = False

    def _add(self, text: str) -> None:
        self._word.append(text)
        self._in_word = True

    # -- scanning helpers ------------------------------------------------------------------
    def _match_paren(self, start: int) -> int:
        """Index just past the ``)`` closing the ``(`` before ``start``."""
        depth = 1
        i = start
        s = self.s
        while i < len(s):
            c = s[i]
            if c == "\\":
                i += 2
                continue
            if c == "'":
                j = s.find("'", i + 1)
                i = len(s) if j < 0 else j + 1
                continue
            if c == '"':
                i = self._skip_double(i + 1)
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return len(s)

    def _skip_double(self, i: int) -> int:
        s = self.s
        while i < len(s):
            if s[i] == "\\":
                i += 2
                continue
            if s[i] == '"':
                return i + 1
            if s.startswith("$(", i):
                i = self._match_paren(i + 2)
                continue
            i += 1
        return len(s)

    def _backtick(self, i: int) -> int:
        """``i`` is just past an opening backtick; returns index past the closing one."""
        s = self.s
        j = i
        while j < len(s) and s[j] != "`":
            j += 2 if s[j] == "\\" else 1
        self.nested.append(s[i:j].replace("\\`", "`"))
        self._add("`" + s[i:j] + "`")
        return min(j + 1, len(s))

    def _dollar(self, i: int) -> int:
        """``i`` points at ``$``; consumes an expansion and returns the next index."""
        s = self.s
        if s.startswith("$((", i):
            end = self._match_paren(i + 2)
            end = end + 1 if end < len(s) and s[end] == ")" else end
            self._add(s[i:end])
            return end
        if s.startswith("$(", i):
            end = self._match_paren(i + 2)
            self.nested.append(s[i + 2 : end - 1])
            self._add(s[i:end])
            return end
        if s.startswith("${", i):
            depth = 0
            j = i + 1
            while j < len(s):
                if s[j] == "{":
                    depth += 1
                elif s[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            self._add(s[i : j + 1])
            return j + 1
        if s.startswith("$'", i):  # ANSI-C quoting: keep the text, decode simple escapes
            j = i + 2
            out: list[str] = []
            while j < len(s) and s[j] != "'":
                if s[j] == "\\" and j + 1 < len(s):
                    out.append({"n": "\n", "t": "\t", "'": "'", "\\": "\\"}.get(s[j + 1],
                                                                                "\\" + s[j + 1]))
                    j += 2
                    continue
                out.append(s[j])
                j += 1
            self._add("".join(out))
            return j + 1
        self._add("$")
        return i + 1

    def _double_quoted(self, i: int) -> int:
        """``i`` is just past an opening ``"``."""
        s = self.s
        self._in_word = True
        while i < len(s):
            c = s[i]
            if c == '"':
                return i + 1
            if c == "\\" and i + 1 < len(s):
                nxt = s[i + 1]
                if nxt in '"\\$`':
                    self._add(nxt)
                elif nxt == "\n":
                    pass
                else:
                    self._add("\\" + nxt)
                i += 2
                continue
            if c == "$":
                i = self._dollar(i)
                continue
            if c == "`":
                i = self._backtick(i + 1)
                continue
            self._add(c)
            i += 1
        return i

    def _redirection(self, i: int) -> int:
        """``i`` points at ``<``, ``>`` or the ``&`` of ``&>``; drops operator and target."""
        s = self.s
        if self._in_word and _FD_WORD.fullmatch("".join(self._word)):
            self._word = []
            self._in_word = False
        else:
            self._end_word()
        m = _REDIR_OP.match(s, i)
        assert m is not None
        op = m.group(0)
        i = m.end()
        if op in ("<&", ">&"):
            m2 = _DUP_TARGET.match(s, i)
            if m2:
                return m2.end()
        if op in ("<<", "<<-"):
            m3 = _HEREDOC_DELIM.match(s, i)
            if m3:
                self._heredocs.append((m3.group(2), op == "<<-"))
                return m3.end()
        if op == "<" and s.startswith("(", i):  # process substitution <(…)
            end = self._match_paren(i + 1)
            self.nested.append(s[i + 1 : end - 1])
            return end
        self._drop_next_word = True
        return i

    def _skip_heredocs(self, i: int) -> int:
        """``i`` is just past a newline; skips pending here-document bodies."""
        s = self.s
        while self._heredocs:
            delim, strip_tabs = self._heredocs.pop(0)
            while i < len(s):
                j = s.find("\n", i)
                line = s[i:] if j < 0 else s[i:j]
                i = len(s) if j < 0 else j + 1
                if (line.lstrip("\t") if strip_tabs else line) == delim:
                    break
        return i

    # -- main loop -------------------------------------------------------------------------
    def parse(self) -> list[list[str]]:
        s = self.s
        i = 0
        while i < len(s):
            c = s[i]
            if c == "\\":
                if i + 1 < len(s) and s[i + 1] == "\n":
                    i += 2
                    continue
                if i + 1 < len(s):
                    self._add(s[i + 1])
                i += 2
                continue
            if c == "'":
                j = s.find("'", i + 1)
                j = len(s) if j < 0 else j
                self._add(s[i + 1 : j])
                i = j + 1
                continue
            if c == '"':
                i = self._double_quoted(i + 1)
                continue
            if c == "$":
                i = self._dollar(i)
                continue
            if c == "`":
                i = self._backtick(i + 1)
                continue
            if c in " \t":
                self._end_word()
                i += 1
                continue
            if c == "#" and not self._in_word:
                j = s.find("\n", i)
                i = len(s) if j < 0 else j
                continue
            if c == "\n":
                self._end_command()
                i = self._skip_heredocs(i + 1)
                continue
            if c in "<>" or (c == "&" and s.startswith(">", i + 1)):
                if c == ">" and s.startswith("(", i + 1):  # process substitution >(…)
                    end = self._match_paren(i + 2)
                    self.nested.append(s[i + 2 : end - 1])
                    self._add(s[i:end])
                    i = end
                    continue
                i = self._redirection(i)
                continue
            if (c == "(" and s.startswith("((", i) and not self._in_word
                    and all(w in RESERVED_PREFIX for w in self._words)):
                end = self._match_paren(i + 2)  # arithmetic command ((…))
                i = end + 1 if end < len(s) and s[end] == ")" else end
                continue
            if c in ";&|()":
                self._end_command()
                i += 1
                continue
            self._add(c)
            i += 1
        self._end_command()
        return self.commands


def simple_commands(line: str, _depth: int = 0) -> list[list[str]]:
    """Word lists of every simple command in ``line``, substitutions included, in text order.

    Redirections and comments are gone and quotes removed; assignments, reserved words and
    builtins are still there (see :func:`exec_argvs` for what is exec'd).
    """
    parser = _Parser(line, _depth)
    commands = parser.parse()
    if _depth < MAX_DEPTH:
        for body in parser.nested:
            commands.extend(simple_commands(body, _depth + 1))
    return commands
