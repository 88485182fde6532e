# cparsl launcher 'simple': 2 node(s) x 4 task(s)
'cparsl-manager' '--label' 'my block' 'it'\''s $HOME'
