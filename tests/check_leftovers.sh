#!/usr/bin/env bash
# check_leftovers.sh - run a command (an mpiexec line), then check that
# nothing it started is still running: no rank, worker child, fork helper
# or app process.
#
#   check_leftovers.sh EXE mpiexec -n 4 EXE CASE
#
# The command runs with a variable of its own, CPARSL_LEFTOVER_TAG, which
# mpiexec hands to every rank, and which every rank's fork helper, worker
# children and app processes inherit (the env scrubbing keeps user
# variables).  Two seconds after the command exits, a process whose
# environment carries that tag is a leftover: it is reported (with its
# command line; EXE there is one of the test binary's own processes),
# killed, and the check fails.  The command's own exit status must be 0 as
# well.  Matching on EXE's path alone would also catch the processes of
# other cases that CTest runs at the same time (ctest -j).
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
    if { tr '\0' '\n' <"$d/environ"; } 2>/dev/null |
        grep -qxF "CPARSL_LEFTOVER_TAG=$tag"; then
        leftovers+=("$pid")
    fi
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
        what=
        [[ $cmd == "$exe "* ]] && what=" (the test binary)"
        echo "  pid $pid ppid ${ppid:-?} comm ${comm:-?}$what: ${cmd:-?}" >&2
    done
    kill -KILL "${leftovers[@]}" 2>/dev/null
    status=1
fi
((status == 0)) && echo "check_leftovers: ok (nothing left behind)"
exit $status
