#!/usr/bin/env bash
# A private one-node Slurm on 127.0.0.1 for the tests (CTest fixture
# "slurm"): its own slurm.conf, spool, state, logs and ports under DIR, so
# a system's /etc/slurm is never touched.  Daemons are stopped by the pids
# this script recorded, after checking each pid is still that daemon.
#
#   cluster.sh start DIR   start munged (if none runs), slurmctld, slurmd;
#                          wait until the node is idle; DIR/env exports
#                          SLURM_CONF
#   cluster.sh stop DIR    stop what start started
#
# If the daemons cannot start, start fails and prints their logs.
# Needs root (scripts/deps installs munge, slurmctld, slurmd, slurm-client).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z $cmd || -z $dir ]]; then
    echo "usage: cluster.sh start|stop DIR" >&2
    exit 2
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf=$dir/slurm.conf
# Ports of our own, away from a system Slurm's 6817/6818.
ctld_port=${CPARSL_SLURM_PORT:-16817}
slurmd_port=$((ctld_port + 1))

fail() {
    echo "cluster.sh: $*" >&2
    for log in "$dir"/*.log; do
        [[ -f $log ]] || continue
        echo "---- $log" >&2
        tail -n 40 "$log" >&2
    done
    exit 1
}

# Kill the daemon whose pid is in $1 if /proc says it is $2.
stop_pid() {
    local pidfile=$1 comm=$2 pid
    [[ -f $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ -n $pid && -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$comm" ]]; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

start() {
    ((EUID == 0)) || fail "needs root (daemons, munge)"
    for tool in munged slurmctld slurmd sinfo sbatch; do
        command -v "$tool" >/dev/null ||
            fail "$tool not found: run scripts/deps"
    done
    stop_quietly
    # munge: the key the package made, the run dir, one daemon.
    if [[ ! -f /etc/munge/munge.key ]]; then
        mungekey --create >/dev/null 2>&1 || fail "cannot create a munge key"
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge
    chown munge:munge /run/munge
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- munged || fail "munged did not start"
        # munged writes its pid file once it has daemonized.
        for _ in $(seq 50); do
            [[ -s /run/munge/munged.pid ]] && break
            sleep 0.1
        done
        cp /run/munge/munged.pid "$dir/munged.pid" ||
            fail "munged wrote no pid file"
    fi
    local host mem
    host=$(hostname -s)
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
    mkdir -p "$dir/state" "$dir/spool"
    cat >"$conf" <<EOF
# cparsl's private test cluster (tests/slurm/cluster.sh)
ClusterName=cparsltest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
KillWait=5
MinJobAge=300
EnforcePartLimits=ALL
MpiDefault=pmix
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
NodeName=$host NodeAddr=127.0.0.1 CPUs=8 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$conf
    slurmctld -f "$conf" || fail "slurmctld did not start"
    slurmd -f "$conf" -N "$host" || fail "slurmd did not start"
    local state=""
    for _ in $(seq 200); do
        state=$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)
        [[ $state == idle || $state == mixed ]] && break
        sleep 0.1
    done
    [[ $state == idle || $state == mixed ]] ||
        fail "the node did not come up (state '$state')"
    echo "export SLURM_CONF=$conf" >"$dir/env"
    echo "cluster.sh: Slurm is up: node $host idle, SLURM_CONF=$conf"
}

stop_quietly() {
    stop_pid "$dir/slurmd.pid" slurmd
    stop_pid "$dir/slurmctld.pid" slurmctld
    # Daemons of an earlier run on this same DIR whose pid files are gone:
    # they name our private slurm.conf on their command lines.
    local pid
    for pid in $(pgrep -f -- "-f $conf" || true); do
        case $(cat /proc/"$pid"/comm 2>/dev/null) in
        slurmd | slurmctld) kill -9 "$pid" 2>/dev/null || true ;;
        esac
    done
}

stop() {
    stop_quietly
    stop_pid "$dir/munged.pid" munged
    rm -rf "$dir/state" "$dir/spool"
    echo "cluster.sh: stopped"
}

case $cmd in
start) start ;;
stop) stop ;;
*)
    echo "usage: cluster.sh start|stop DIR" >&2
    exit 2
    ;;
esac
