#!/bin/sh
# The stand-ins themselves: documented syntax accepted, the rest refused
# with the scheduler's message, states and formats as documented.
#   selftest.sh DIR      (DIR: a scratch directory)
set -u
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: selftest.sh DIR}
rm -rf "$dir" && mkdir -p "$dir" && dir=$(cd "$dir" && pwd) && cd "$dir" || exit 1
export CPARSL_STANDIN_DIR="$dir/state"
fails=0
fail() { echo "selftest: FAIL: $*" >&2; fails=$((fails + 1)); }
script() { # script NAME DIRECTIVE... ; the job writes $dir/NAME.ran, exits $EXIT
    f="$dir/$1.sh"; shift
    { echo '#!/bin/sh'; for d in "$@"; do echo "$d"; done
      echo "echo ran > $f.ran; sleep \${SLEEP:-0}; exit \${EXIT:-0}"; } > "$f"
    chmod 700 "$f"; echo "$f"
}
refused() { # refused WORDS CMD...: non-zero exit and WORDS on stderr
    words=$1; shift
    if out=$("$@" 2>&1); then fail "accepted: $*"; return; fi
    case "$out" in *"$words"*) ;; *) fail "$*: '$out' lacks '$words'";; esac
}
P=$here/pbs C=$here/cobalt

# PBS Pro: a good job runs, R then F with its exit status.
s=$(script good '#PBS -N cparsl.htex.0' '#PBS -l select=2:ncpus=4' \
    '#PBS -l place=scatter:excl' '#PBS -l walltime=00:10:00' \
    '#PBS -q debug' '#PBS -A proj' "#PBS -o $dir/good.o" "#PBS -e $dir/good.e")
id=$(SLEEP=1 EXIT=3 "$P/qsub" "$s") || fail "qsub of a good script"
case "$id" in [0-9]*.standin) ;; *) fail "job id '$id'";; esac
"$P/qstat" -f -x "$id" | grep -q 'job_state = R' || fail "not R at first"
sleep 1.5
"$P/qstat" -f -x "$id" | grep -q 'Exit_status = 3' || fail "no Exit_status = 3"
[ -f "$s.ran" ] || fail "the job did not run"
"$P/qstat" -f -x 99.standin 2>&1 >/dev/null | grep -q 'Unknown Job Id 99.standin' ||
    fail "unknown id"
"$P/qstat" -f -x 99.standin >/dev/null 2>&1; [ $? -eq 153 ] || fail "exit 153"
id=$(SLEEP=30 "$P/qsub" "$(script del '#PBS -l select=1:ncpus=1')")
"$P/qdel" "$id" || fail "qdel"
sleep 0.5
"$P/qstat" -f -x "$id" | grep -q 'Exit_status = 271' || fail "qdel'd: not 271"
refused 'Resource_List.select' "$P/qsub" "$(script b1 '#PBS -l select=abc')"
refused 'Resource_List.walltime' "$P/qsub" "$(script b2 '#PBS -l walltime=1:2:3:4')"
refused 'Resource_List.place' "$P/qsub" "$(script b3 '#PBS -l place=sideways')"
refused 'illegal -N value' "$P/qsub" "$(script b4 '#PBS -N 1bad')"
refused "invalid option -- 'Z'" "$P/qsub" -Z "$(script b5)"
refused 'Unknown resource' env CPARSL_STANDIN_DIALECT=torque "$P/qsub" \
    "$(script b6 '#PBS -l select=1:ncpus=2')"
# Torque: nodes=N:ppn=P, state C with exit_status.
id=$(CPARSL_STANDIN_DIALECT=torque "$P/qsub" \
     "$(script tq '#PBS -l nodes=2:ppn=4' '#PBS -n')") || fail "torque qsub"
sleep 0.5
CPARSL_STANDIN_DIALECT=torque "$P/qstat" -f "$id" |
    grep -q 'job_state = C' || fail "torque: not C"
# Cobalt: the job id alone; qstat --header; qdel.
s=$(script cb)
id=$(SLEEP=30 "$C/qsub" -n 2 -t 10 -A proj -O "$dir/cb" --mode script "$s") ||
    fail "cobalt qsub"
case "$id" in *[!0-9]*|'') fail "cobalt job id '$id'";; esac
"$C/qstat" --header JobID:State "$id" | sed -n 3p | grep -q "^$id  *running" ||
    fail "cobalt qstat"
"$C/qdel" "$id" | grep -q 'Deleted Jobs' || fail "cobalt qdel"
refused 'time value' "$C/qsub" -n 1 -t 1:2:3:4 --mode script "$s"
refused 'node count' "$C/qsub" -n 0 -t 10 --mode script "$s"
chmod 600 "$s"
refused 'not executable' "$C/qsub" -n 1 -t 10 --mode script "$s"
refused 'no such option: --foo' "$C/qsub" --foo -n 1 -t 10 "$s"
# Fault injection.
echo "qstat: server down" > "$CPARSL_STANDIN_DIR/fail.qstat"
refused 'server down' "$P/qstat" -f "$id"
rm -f "$CPARSL_STANDIN_DIR/fail.qstat"
[ "$fails" -eq 0 ] && echo "selftest: ok" && exit 0
exit 1
