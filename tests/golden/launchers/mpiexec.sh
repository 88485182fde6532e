# cparsl launcher 'mpiexec': 2 node(s) x 4 task(s)
mpiexec -n 8 --map-by ppr:4:node --exclusive 'cparsl-manager' '--label' 'my block' 'it'\''s $HOME'
