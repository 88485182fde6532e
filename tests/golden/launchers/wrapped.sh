# cparsl launcher 'wrapped': 2 node(s) x 4 task(s)
apptainer exec image.sif 'cparsl-manager' '--label' 'my block' 'it'\''s $HOME'
