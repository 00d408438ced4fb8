# shellcheck shell=sh
# shellcheck disable=SC2154  # WANT_RELEASE, PAYLOAD, ... come from the generated preamble
# One apply: unpack and verify the payload (stdin), swap release, policy and unit into place,
# start, restart or reload the agent and wait until it has the new policy in force.
check_managed_dirs  # dirs.sh: before anything changes
make_managed_dirs
exec 9>"$INSTALL_DIR/.deploy.lock"
flock -n 9 || fail "another deploy is running on this host ($INSTALL_DIR/.deploy.lock)"
OLD_RELEASE=""
[ -L "$INSTALL_DIR/current" ] && OLD_RELEASE=$(basename "$(readlink "$INSTALL_DIR/current")")
echo "old_release=$OLD_RELEASE"
install_packages
STAGE=$(mktemp -d "$INSTALL_DIR/.stage-XXXXXXXX")
trap 'rm -rf "$STAGE"' EXIT
if [ "$PAYLOAD" = 1 ]; then
    tar -xzf - -C "$STAGE" --no-same-owner --no-same-permissions || fail "payload did not unpack"
    (cd "$STAGE" && sha256sum -c --quiet manifest.sha256 >/dev/null 2>&1) \
        || fail "payload sha256 mismatch after transfer"
fi
if [ "$PUSH_RELEASE" = 1 ]; then
    tmp="$INSTALL_DIR/releases/$WANT_RELEASE.tmp-$RAND"
    mv "$STAGE/release" "$tmp"
    (cd "$tmp" && sha256sum -c --quiet "$STAGE/release.sha256" >/dev/null 2>&1) \
        || fail "release $WANT_RELEASE sha256 mismatch in $tmp"
    chmod -R go= "$tmp"
    rm -rf "$INSTALL_DIR/releases/$WANT_RELEASE"
    mv "$tmp" "$INSTALL_DIR/releases/$WANT_RELEASE"
fi
if [ "$SWAP_RELEASE" = 1 ]; then
    [ -f "$INSTALL_DIR/releases/$WANT_RELEASE/agent.pyz" ] || fail "release $WANT_RELEASE missing"
    ln -sfn "releases/$WANT_RELEASE" "$INSTALL_DIR/.current.tmp"
    mv -T "$INSTALL_DIR/.current.tmp" "$INSTALL_DIR/current"
    echo "touched_release=1"
fi
if [ "$WRITE_POLICY" = 1 ]; then
    echo "touched_policy=1"
    for f in policy.json policy.yaml; do
        if [ -f "$CONFIG_DIR/$f" ]; then cp -p "$CONFIG_DIR/$f" "$CONFIG_DIR/$f.prev"
        else rm -f "$CONFIG_DIR/$f.prev"; fi
        cp "$STAGE/$f" "$CONFIG_DIR/.$f.tmp" && chmod 600 "$CONFIG_DIR/.$f.tmp"
        mv -f "$CONFIG_DIR/.$f.tmp" "$CONFIG_DIR/$f"
    done
fi
if [ "$WRITE_OUTPUTS" = 1 ]; then  # data files the agent reads at start and on SIGHUP
    echo "touched_outputs=1"
    for f in outputs.json webhook.header; do
        if [ -f "$STAGE/outputs/$f" ]; then
            cp "$STAGE/outputs/$f" "$CONFIG_DIR/.$f.tmp" && chmod 600 "$CONFIG_DIR/.$f.tmp"
            mv -f "$CONFIG_DIR/.$f.tmp" "$CONFIG_DIR/$f"
        else
            rm -f "$CONFIG_DIR/$f"
        fi
    done
fi
if [ "$WRITE_UNIT" = 1 ]; then
    echo "touched_unit=1"
    if [ -f "$UNIT_PATH" ]; then cp -p "$UNIT_PATH" "$CONFIG_DIR/unit.prev"
    else rm -f "$CONFIG_DIR/unit.prev"; fi
    cp "$STAGE/unit" "$UNIT_PATH.tmp" && chmod 644 "$UNIT_PATH.tmp"
    mv -f "$UNIT_PATH.tmp" "$UNIT_PATH"
    systemctl daemon-reload
fi
OLD_PID=$(agent_pid)
T0=$(date +%s.%N)
[ "$SERVICE" = none ] || echo "touched_service=1"
case "$SERVICE" in
    start|restart) agent_service restart ;;  # under the supervisor: stop, then start
    reload) agent_service reload ;;
esac
if [ "$SERVICE" != none ]; then
    OUT=$(wait_agent "$SERVICE" "$WANT_SHA" "$T0" "$OLD_PID") || true
    echo "$OUT"
    case "$OUT" in result=ok*) ;; *) exit 1 ;; esac
else
    echo "result=ok"
fi
# keep the release in force and the one before it (for rollback); drop older ones
cur=$(basename "$(readlink "$INSTALL_DIR/current")")
for d in "$INSTALL_DIR"/releases/*; do
    [ -d "$d" ] || continue
    b=$(basename "$d")
    [ "$b" = "$cur" ] || [ "$b" = "$OLD_RELEASE" ] || rm -rf "$d"
done
