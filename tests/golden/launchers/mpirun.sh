# cparsl launcher 'mpirun': 2 node(s) x 4 task(s)
mpirun -np 8 --exclusive 'cparsl-manager' '--label' 'my block' 'it'\''s $HOME'
