# shellcheck shell=sh
# shellcheck disable=SC2154  # OLD_RELEASE, RESTORE_POLICY, ... come from the generated preamble
# Put back the release and policy that ran before this deploy, restart, wait.  After a first
# install there is nothing to go back to: the agent is stopped, disarmed and the new files removed.
exec 9>"$INSTALL_DIR/.deploy.lock"
flock -w 30 9 || fail "another deploy holds $INSTALL_DIR/.deploy.lock"
# service and wait run from the release just deployed: the one rolled back to may predate them
if [ -f "$INSTALL_DIR/releases/$WANT_RELEASE/agent.pyz" ]; then
    # shellcheck disable=SC2034  # read by common.sh's functions
    AGENT="$INSTALL_DIR/releases/$WANT_RELEASE/agent.pyz"
fi
if [ -z "$OLD_RELEASE" ] || [ ! -d "$INSTALL_DIR/releases/$OLD_RELEASE" ]; then
    stop_agent
    if [ "$MANAGER" = systemd ]; then systemctl disable --quiet "$UNIT_NAME" 2>/dev/null || true; fi
    disarm_agent  # a first install rolled back leaves no program pinned
    rm -f "$INSTALL_DIR/current"
    echo "result=stopped"
    exit 0
fi
ln -sfn "releases/$OLD_RELEASE" "$INSTALL_DIR/.current.tmp"
mv -T "$INSTALL_DIR/.current.tmp" "$INSTALL_DIR/current"
if [ "$RESTORE_POLICY" = 1 ]; then
    for f in policy.json policy.yaml; do
        if [ -f "$CONFIG_DIR/$f.prev" ]; then mv -f "$CONFIG_DIR/$f.prev" "$CONFIG_DIR/$f"; fi
    done
fi
if [ "$RESTORE_UNIT" = 1 ] && [ -f "$CONFIG_DIR/unit.prev" ]; then
    cp "$CONFIG_DIR/unit.prev" "$UNIT_PATH.tmp" && chmod 644 "$UNIT_PATH.tmp"
    mv -f "$UNIT_PATH.tmp" "$UNIT_PATH"
    systemctl daemon-reload
fi
if [ "$RESTART" = 0 ]; then  # a refused reload: the agent still enforces the old policy
    echo "result=ok"
    exit 0
fi
OLD_PID=$(agent_pid)
T0=$(date +%s.%N)
agent_service restart
wait_agent restart "" "$T0" "$OLD_PID"
