# shellcheck shell=sh
# shellcheck disable=SC2154  # PURGE, UNIT_PATH, ... come from the generated preamble
# Uninstall: stop the agent under whichever manager runs it (a host may have moved from one to
# the other), disarm it (unpin its BPF programs: stopping alone leaves them enforcing), then
# remove the unit and the agent's directories (the spool only when purged).
stop_agent
if [ -f "$UNIT_PATH" ]; then
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        # shellcheck disable=SC2034  # read by common.sh's stop_agent
        MANAGER=systemd
        stop_agent
        systemctl disable --quiet "$UNIT_NAME" || fail "systemctl disable $UNIT_NAME failed"
    fi
    rm -f "$UNIT_PATH"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
fi
disarm_agent  # with the release's agent.pyz, before it goes
rm -rf "$INSTALL_DIR" "$CONFIG_DIR" "$RUN_DIR"
if [ "$PURGE" = 1 ]; then rm -rf "$SPOOL_DIR"; fi
echo "result=ok"
