# cparsl launcher 'srun_mpi': 2 node(s) x 4 task(s)
srun --ntasks=8 --ntasks-per-node=4 --nodes=2 --mpi=pmix --exclusive 'cparsl-manager' '--label' 'my block' 'it'\''s $HOME'
