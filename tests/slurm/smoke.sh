#!/usr/bin/env bash
# The private Slurm (cluster.sh) as the providers will see it: a job runs
# and its output lands; a job that exits 3 ends FAILED with ExitCode=3:0;
# scancel gives CANCELLED.  These are the states the slurm provider maps
# to block states.
#
#   smoke.sh DIR     (DIR as given to cluster.sh start)
set -euo pipefail

dir=${1:?usage: smoke.sh DIR}
# shellcheck source=/dev/null
source "$dir/env"
work=$dir/smoke
rm -rf "$work"
mkdir -p "$work"

fail() {
    echo "smoke.sh: FAIL: $*" >&2
    exit 1
}

# The state of job $1, as scontrol shows it (finished jobs stay visible
# for MinJobAge).
job_state() {
    scontrol show job "$1" 2>/dev/null | tr ' ' '\n' |
        sed -n 's/^JobState=//p' | head -n 1
}
exit_code() {
    scontrol show job "$1" 2>/dev/null | tr ' ' '\n' |
        sed -n 's/^ExitCode=//p' | head -n 1
}
wait_state() {
    local id=$1 want=$2 state=""
    for _ in $(seq 300); do
        state=$(job_state "$id")
        [[ $state == "$want" ]] && return 0
        sleep 0.1
    done
    fail "job $id is '$state', expected $want"
}

cat >"$work/ok.sh" <<EOF
#!/bin/sh
echo "ran as job \$SLURM_JOB_ID on \$(hostname -s)" > "$work/ok.out"
EOF
id=$(sbatch --parsable -o "$work/ok.log" "$work/ok.sh")
[[ $id =~ ^[0-9]+$ ]] || fail "sbatch --parsable printed '$id'"
wait_state "$id" COMPLETED
grep -q "ran as job $id" "$work/ok.out" || fail "the job's output: $(cat "$work/ok.out" 2>&1)"

printf '#!/bin/sh\nexit 3\n' >"$work/bad.sh"
id=$(sbatch --parsable -o /dev/null "$work/bad.sh")
wait_state "$id" FAILED
[[ $(exit_code "$id") == 3:0 ]] || fail "exit code $(exit_code "$id"), expected 3:0"

printf '#!/bin/sh\nsleep 120\n' >"$work/long.sh"
id=$(sbatch --parsable -o /dev/null "$work/long.sh")
wait_state "$id" RUNNING
scancel "$id"
wait_state "$id" CANCELLED
echo "smoke.sh: ok (COMPLETED, FAILED 3:0, CANCELLED)"
