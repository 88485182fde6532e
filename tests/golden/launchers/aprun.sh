# cparsl launcher 'aprun': 2 node(s) x 4 task(s)
aprun -n 8 -N 4 --exclusive 'cparsl-manager' '--label' 'my block' 'it'\''s $HOME'
