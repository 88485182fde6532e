#!/bin/sh
# Cobalt block cparsl.htex.3: qsub -n 4 -t 00:45:00 -q debug-cache-quad -A proj --attrs mcdram=cache:numa=quad -O /run/000/block.htex.3 --mode script
# cparsl block 3 of executor 'htex' (cobalt provider, aprun launcher).
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
# cparsl launcher 'aprun': 4 node(s) x 1 task(s)
aprun -n 4 -N 1 -d 64 '/opt/app/bin/sim' '--steps' '10'
