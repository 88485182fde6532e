#!/bin/sh
#SBATCH --job-name=cparsl.htex.3
#SBATCH --output=/run/000/block.htex.3.out
#SBATCH --error=/run/000/block.htex.3.err
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=00:30:00
#SBATCH --partition=debug
#SBATCH --account=proj
#SBATCH --qos=normal
#SBATCH --constraint=haswell
#SBATCH --mem=0
# cparsl block 3 of executor 'htex' (slurm provider, srun launcher).
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
module load mpi
# cparsl launcher 'srun': 2 node(s) x 1 task(s)
srun --ntasks=2 --ntasks-per-node=1 --nodes=2 '/opt/app/bin/sim' '--steps' '10'
