#!/bin/sh
#PBS -N cparsl.htex.3
#PBS -o /run/000/block.htex.3.out
#PBS -e /run/000/block.htex.3.err
#PBS -l nodes=2:ppn=16
#PBS -n
#PBS -l walltime=01:00:00
#PBS -q batch
# cparsl block 3 of executor 'htex' (pbs provider, single_node launcher).
# The run's secret is not in this file: the managers read it from the
# 0600 file beside CPARSL_HTEX_JOIN's address file.
cd '/home/user/work' || exit 1
for cparsl_v in $(env | sed -n -e 's/^\(OMPI_[A-Za-z0-9_]*\)=.*/\1/p' -e 's/^\(PMIX_[A-Za-z0-9_]*\)=.*/\1/p' -e 's/^\(PMI_[A-Za-z0-9_]*\)=.*/\1/p'); do
    unset "$cparsl_v"
done
CPARSL_HTEX_JOIN='/run/000/htex.htex.addr'
export CPARSL_HTEX_JOIN
CPARSL_BLOCK_ID='3'
export CPARSL_BLOCK_ID
ODD='it'\''s $HOME'
export ODD
# cparsl launcher 'single_node': 2 node(s) x 1 task(s)
CPARSL_WORKER_COUNT=1
export CPARSL_WORKER_COUNT
cparsl_pids=""
CPARSL_WORKER_RANK=0
while [ "$CPARSL_WORKER_RANK" -lt 1 ]; do
    export CPARSL_WORKER_RANK
    '/opt/app/bin/sim' '--steps' '10' &
    cparsl_pids="$cparsl_pids $!"
    CPARSL_WORKER_RANK=$((CPARSL_WORKER_RANK + 1))
done
cparsl_status=0
for cparsl_pid in $cparsl_pids; do
    wait "$cparsl_pid" || cparsl_status=1
done
exit "$cparsl_status"
