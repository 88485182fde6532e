# cparsl launcher 'single_node': 2 node(s) x 4 task(s)
CPARSL_WORKER_COUNT=4
export CPARSL_WORKER_COUNT
cparsl_pids=""
CPARSL_WORKER_RANK=0
while [ "$CPARSL_WORKER_RANK" -lt 4 ]; do
    export CPARSL_WORKER_RANK
    'cparsl-manager' '--label' 'my block' 'it'\''s $HOME' &
    cparsl_pids="$cparsl_pids $!"
    CPARSL_WORKER_RANK=$((CPARSL_WORKER_RANK + 1))
done
cparsl_status=0
for cparsl_pid in $cparsl_pids; do
    wait "$cparsl_pid" || cparsl_status=1
done
exit "$cparsl_status"
