#!/usr/bin/env bash
# check_leftovers.sh - run a command (an mpiexec line), then check that
# nothing it started is still running: no rank, worker child, fork helper
# or app process.
#
#   check_leftovers.sh EXE mpiexec -n 4 EXE CASE
#
# The command runs with a variable of its own, CPARSL_LEFTOVER_TAG, which
# mpiexec hands to every rank and every rank's worker children inherit
# (the env scrubbing keeps user variables).  Two seconds after the
# command exits, a process whose environment carries that tag, or whose
# command line starts with EXE, is a leftover: it is reported, killed,
# and the check fails.  The command's own exit status must be 0 as well.
set -u

exe=$1
shift
tag="cparsl-leftovers-$$-$RANDOM$RANDOM"

# Only the command gets the tag: the processes this script starts to
# look around must not carry it.
CPARSL_LEFTOVER_TAG=$tag "$@"
rc=$?

sleep 2

# Our own processes (this script and its subshells) are not leftovers.
leftovers=()
for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    mine=0
    if { tr '\0' '\n' <"$d/environ"; } 2>/dev/null |
        grep -qxF "CPARSL_LEFTOVER_TAG=$tag"; then
        mine=1
    fi
    if ((!mine)); then
        argv0=$({ tr '\0' '\n' <"$d/cmdline"; } 2>/dev/null | head -n 1)
        [[ $argv0 == "$exe" ]] && mine=1
    fi
    ((mine)) && leftovers+=("$pid")
done

status=0
if ((rc != 0)); then
    echo "check_leftovers: the command exited with status $rc" >&2
    status=1
fi
if ((${#leftovers[@]})); then
    echo "check_leftovers: ${#leftovers[@]} process(es) left behind:" >&2
    for pid in "${leftovers[@]}"; do
        comm=$({ cat "/proc/$pid/comm"; } 2>/dev/null)
        ppid=$({ awk '/^PPid:/ { print $2 }' "/proc/$pid/status"; } 2>/dev/null)
        cmd=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)
        echo "  pid $pid ppid ${ppid:-?} comm ${comm:-?}: ${cmd:-?}" >&2
    done
    kill -KILL "${leftovers[@]}" 2>/dev/null
    status=1
fi
((status == 0)) && echo "check_leftovers: ok (nothing left behind)"
exit $status
