# cparsl launcher 'gnu_parallel': 2 node(s) x 4 task(s)
cparsl_nodefile=${PBS_NODEFILE:-}
if [ -z "$cparsl_nodefile" ] && [ -n "${SLURM_JOB_NODELIST:-}" ]; then
    cparsl_nodefile=$(mktemp)
    scontrol show hostnames "$SLURM_JOB_NODELIST" > "$cparsl_nodefile"
fi
[ -n "$cparsl_nodefile" ] || { echo 'gnu_parallel: no PBS_NODEFILE or SLURM_JOB_NODELIST' >&2; exit 1; }
seq 1 8 | parallel --no-notice -q -j 4 --sshloginfile "$cparsl_nodefile" --exclusive sh -c ''\''cparsl-manager'\'' '\''--label'\'' '\''my block'\'' '\''it'\''\'\'''\''s $HOME'\''' _ {}
