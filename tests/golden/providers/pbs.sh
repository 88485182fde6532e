#!/bin/sh
#PBS -N cparsl.htex.3
#PBS -o /run/000/block.htex.3.out
#PBS -e /run/000/block.htex.3.err
#PBS -l select=2:ncpus=64:mem=200gb
#PBS -l place=scatter:excl
#PBS -l walltime=02:00:00
#PBS -q debug
#PBS -A proj
#PBS -l filesystems=home
# cparsl block 3 of executor 'htex' (pbs provider, mpiexec launcher).
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
# worker_init
source env.sh
# cparsl launcher 'mpiexec': 2 node(s) x 1 task(s)
mpiexec -n 2 --map-by ppr:1:node '/opt/app/bin/sim' '--steps' '10'
