# cparsl launcher 'jsrun': 2 node(s) x 4 task(s)
jsrun -n 8 -r 4 --exclusive 'cparsl-manager' '--label' 'my block' 'it'\''s $HOME'
