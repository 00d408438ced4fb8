# shellcheck shell=sh
# shellcheck disable=SC2154  # INSTALL_DIR, MANAGER, ... come from the generated, quoted preamble
# Shared by apply.sh, rollback.sh and uninstall.sh: start, stop, reload and wait for the agent
# with the release's own `agent.pyz service` and `agent.pyz wait`, as the Ansible role does.
set -eu
umask 077
fail() { echo "result=failed"; echo "error=$*"; exit 1; }
nl='
'
# The release whose agent.pyz runs service and wait (rollback.sh may name the newer one).
AGENT="$INSTALL_DIR/current/agent.pyz"
agent_service() {  # start|restart|stop|reload
    if [ ! -f "$AGENT" ]; then
        [ "$1" = stop ] && return 0  # no release: nothing of ours can be running
        fail "no agent release at $AGENT"
    fi
    # 9>&-: a daemon must not inherit (and hold forever) the deploy lock
    err=$("$PYTHON" "$AGENT" service "$1" --manager "$MANAGER" --install-dir "$INSTALL_DIR" \
            --config-dir "$CONFIG_DIR" --spool "$SPOOL_DIR" --run-dir "$RUN_DIR" \
            --unit "$UNIT_NAME" --host-name "$HOST_NAME" 2>&1 >/dev/null 9>&-) \
        || { printf '%s\n' "$err" >&2; fail "${err##*"$nl"}"; }
}
quiesce_agent() {  # systemd: a policy without rules first, so self-protection lets us stop it
    p=$(systemctl show -p MainPID --value "$UNIT_NAME" 2>/dev/null || echo 0)
    [ -n "$p" ] && [ "$p" -gt 0 ] && [ -d "$CONFIG_DIR" ] || return 0
    printf '%s\n' "$NO_RULES_BUNDLE" > "$CONFIG_DIR/.policy.json.tmp"
    mv -f "$CONFIG_DIR/.policy.json.tmp" "$CONFIG_DIR/policy.json"
    t0=$(date +%s.%N)
    kill -HUP "$p"  # the shell's kill: no exec for the agent's rules to judge
    wait_agent reload "$NO_RULES_SHA" "$t0" "$p" >/dev/null || true
}
stop_agent() {
    if [ "$MANAGER" = systemd ]; then
        systemctl is-active --quiet "$UNIT_NAME" 2>/dev/null || return 0
        quiesce_agent
    fi
    agent_service stop
}
disarm_agent() {  # stopping leaves the pinned BPF program enforcing: disarm unpins it
    [ -f "$AGENT" ] || return 0
    "$PYTHON" "$AGENT" disarm --help >/dev/null 2>&1 || return 0  # a release before pinning
    err=$("$PYTHON" "$AGENT" disarm --spool "$SPOOL_DIR" --run-dir "$RUN_DIR" \
            --unit "$UNIT_NAME" 2>&1 >/dev/null 9>&-) \
        || { printf '%s\n' "$err" >&2; fail "agent disarm: ${err##*"$nl"}"; }
}
agent_pid() {
    if [ "$MANAGER" = systemd ]; then
        systemctl show -p MainPID --value "$UNIT_NAME" 2>/dev/null || echo 0
    else
        cat "$RUN_DIR/agent.pid" 2>/dev/null || echo 0
    fi
}
wait_agent() {  # action want_sha t0 old_pid: prints result=, error=, status= lines
    "$PYTHON" "$AGENT" wait --spool "$SPOOL_DIR" --policy-sha "$2" --action "$1" --since "$3" \
        --old-pid "$4" --timeout "$START_TIMEOUT" --format kv
}
