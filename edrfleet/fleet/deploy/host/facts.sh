# shellcheck shell=sh
# shellcheck disable=SC2154  # PYTHON, FACTS_PY, ... come from the generated preamble
# Facts: facts.py on the host's python3 (in $FACTS_PY), or the basics without one.
export INSTALL_DIR CONFIG_DIR SPOOL_DIR RUN_DIR UNIT_PATH UNIT_NAME WANT_RELEASE WANT_YAML
export RELEASE_FILES
if [ -x "$PYTHON" ] && "$PYTHON" -c "$FACTS_PY"; then exit 0; fi
# no usable python3: the basics, so the host fails with the package to install
echo "kernel_release=$(uname -r)"
echo "pid1=$(cat /proc/1/comm 2>/dev/null)"
echo "uid=$(id -u)"
command -v apt-get >/dev/null 2>&1 && echo "apt=1"
[ -e "/lib/modules/$(uname -r)/build" ] && echo "kernel_headers=1"
exit 0
