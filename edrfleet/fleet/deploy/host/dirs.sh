# shellcheck shell=sh
# shellcheck disable=SC2154  # INSTALL_DIR, CONFIG_DIR, ... come from the generated preamble
# Managed directories: root owns each of them and every parent up to /, or deploy changes
# nothing.  A directory another user owns or may write (or a parent of it) lets that user swap
# `current` or a release, or plant a policy, and have it run as root at the agent's next start.
#
# A parent writable by all with the sticky bit (/tmp, /var/tmp) is accepted when root owns it:
# the sticky bit lets nobody but root (and the entry's owner, root here) rename or remove the
# root-owned entry below it, and that entry is checked like the rest.  Refusing it would refuse
# every path under /tmp without making one safer.

# One line when directory $2 (variable $1; $3 = managed|parent) may not be ours, else nothing.
dir_refusal() {
    if [ -L "$2" ]; then
        # a root-owned link as a parent (/var/run -> /run); its target is checked as well
        [ "$3" = parent ] && [ "$(stat -c %u "$2")" = 0 ] && return 0
        echo "$1: $2 is a symbolic link owned by uid $(stat -c %u "$2") (fix: make it a directory owned by root:root, mode 0700, or choose another $1)"
        return 0
    fi
    [ -e "$2" ] || return 0
    [ -d "$2" ] || { echo "$1: $2 exists and is not a directory (fix: remove it, or choose another $1)"; return 0; }
    uid=$(stat -c %u "$2")
    mode=$(stat -c %a "$2")
    who=$(stat -c %U:%G "$2")
    if [ "$uid" != 0 ]; then
        echo "$1: $2 is owned by $who (uid $uid, mode $mode), not root: that user could replace what the agent runs as root (fix: chown root:root $2 && chmod go-w $2 after checking its content, or choose another $1)"
    elif [ $((0$mode & 022)) != 0 ] && { [ "$3" = managed ] || [ $((0$mode & 01000)) = 0 ]; }; then
        echo "$1: $2 is writable by group or others ($who, mode $mode): they could replace what the agent runs as root (fix: chmod go-w $2, or choose another $1)"
    fi
}

# Every component of $2 (as written, then resolved) for variable $1; prints the first refusal.
tree_refusal() {
    for path in "$2" "$(realpath -m -- "$2")"; do
        rest=${path#/}
        c=""
        r=$(dir_refusal "$1" / parent)
        while [ -z "$r" ] && [ -n "$rest" ]; do
            c="$c/${rest%%/*}"
            case $rest in */*) rest=${rest#*/} ;; *) rest="" ;; esac
            kind=parent
            [ -n "$rest" ] || kind=managed
            r=$(dir_refusal "$1" "$c" "$kind")
        done
        [ -z "$r" ] || { echo "$r"; return 0; }
    done
}

check_managed_dirs() {  # before anything changes: refuse the first directory that is not ours
    for pair in "edrfleet_install_dir=$INSTALL_DIR" "edrfleet_install_dir=$INSTALL_DIR/releases" \
                "edrfleet_config_dir=$CONFIG_DIR" "edrfleet_spool_dir=$SPOOL_DIR" \
                "edrfleet_run_dir=$RUN_DIR"; do
        r=$(tree_refusal "${pair%%=*}" "${pair#*=}")
        [ -z "$r" ] || fail "refusing to deploy: $r"
    done
}

make_managed_dirs() {  # create what is missing as root:root 0700, take over what is there
    for d in "$INSTALL_DIR" "$INSTALL_DIR/releases" "$CONFIG_DIR" "$SPOOL_DIR" "$RUN_DIR"; do
        rest=${d#/}
        c=""
        while [ -n "$rest" ]; do
            c="$c/${rest%%/*}"
            case $rest in */*) rest=${rest#*/} ;; *) rest="" ;; esac
            if [ ! -e "$c" ] && [ ! -L "$c" ]; then
                # no -p: a directory someone made since the check fails here, unused
                mkdir -m 700 "$c" || fail "could not create $c (did another user create it meanwhile?)"
                chown root:root "$c"
            fi
        done
        { chown root:root "$d" && chmod 700 "$d"; } || fail "could not take over $d"
    done
}
