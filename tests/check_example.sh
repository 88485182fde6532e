#!/usr/bin/env bash
# check_example.sh - run one example in a fresh scratch directory and check
# its answer.  CTest calls this from examples.cmake; a regular expression
# alone cannot check a numeric range, and PASS_REGULAR_EXPRESSION would
# ignore the exit status.
#
#   check_example.sh hello EXE
#   check_example.sh monte_carlo EXE N
#   check_example.sh bash_pipeline EXE
#   check_example.sh sort_numbers EXE
#   check_example.sh sort_numbers_bad EXE
#   check_example.sh insitu EXE STEPS     (CPARSL_LAUNCH: mpiexec -n N)
set -u

mode=$1
exe=$2
shift 2

scratch=$(mktemp -d "${TMPDIR:-/tmp}/cparsl-example.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT
cd "$scratch" || exit 1

fail() {
    echo "check_example: $mode: $*" >&2
    exit 1
}

# Run the example with the given arguments, keeping stdout in $out and
# echoing everything so that a failed test shows what the example said.
# CPARSL_LAUNCH, when set, is a launcher prefix (mpiexec -n 4 ...): the
# same example then runs as an MPI job and must give the same answer.
run() {
    local launch=()
    read -r -a launch <<<"${CPARSL_LAUNCH:-}"
    out=$("${launch[@]}" "$exe" "$@" 2>stderr.txt)
    rc=$?
    printf '%s\n' "$out"
    cat stderr.txt >&2
}

case $mode in
hello)
    run
    ((rc == 0)) || fail "exit status $rc"
    grep -qxE 'hello done=(True|False)' <<<"$out" || fail "no done line"
    grep -qx 'hello result=Hello World!' <<<"$out" || fail "wrong result"
    ;;
monte_carlo)
    n=$1
    run "$n"
    ((rc == 0)) || fail "exit status $rc"
    grep -qx "monte_carlo n=$n" <<<"$out" || fail "no 'n=$n' line"
    mean=$(sed -n 's/^monte_carlo mean=\([-0-9.]*\)$/\1/p' <<<"$out")
    [[ -n $mean ]] || fail "no mean line"
    # The integral is 0.363582; 0.01 is many standard errors at N=20000.
    within='BEGIN { d = m - 0.3636; exit !(d < 0.01 && d > -0.01) }'
    awk -v m="$mean" "$within" ||
        fail "mean $mean is not within 0.01 of 0.3636"
    ;;
bash_pipeline)
    run
    ((rc == 0)) || fail "exit status $rc"
    line=$(grep -xE 'bash_pipeline( r[0-4]=([1-9]|10)){5}' <<<"$out") ||
        fail "no line with five values in 1..10"
    total=$(sed -n 's/^bash_pipeline total=\([0-9]*\)$/\1/p' <<<"$out")
    [[ -n $total ]] || fail "no total line"
    sum=0
    for i in 0 1 2 3 4; do
        [[ -f r$i.txt ]] || fail "r$i.txt was not written"
        v=${line#*r"$i"=}
        v=${v%% *}
        [[ $(<"r$i.txt") == "$v" ]] || fail "r$i.txt does not hold $v"
        sum=$((sum + v))
    done
    ((sum == total)) || fail "total $total, but the values sum to $sum"
    ;;
sort_numbers)
    printf '5 3\n9  1\n\n7\t-2.5\n1e3 0.25\n' >numbers.txt
    run "$scratch/numbers.txt"
    ((rc == 0)) || fail "exit status $rc"
    grep -qx 'sort_numbers sorted=-2.5 0.25 1 3 5 7 9 1000' <<<"$out" ||
        fail "wrong or missing sorted line"
    ;;
sort_numbers_bad)
    printf '5 3\n9 x1\n7\n' >bad.txt
    run "$scratch/bad.txt"
    ((rc == 1)) || fail "exit status $rc, expected 1"
    grep -q "bad.txt: token 4 'x1' is not a number" stderr.txt ||
        fail "the error does not name the file and the token"
    ;;
insitu)
    steps=$1
    run "$steps"
    ((rc == 0)) || fail "exit status $rc"
    line=$(grep -E '^insitu ' <<<"$out") || fail "no summary line"
    grep -qE 'simulation_ranks=([2-9]|[1-9][0-9]+) pilot_ranks=([2-9]|[1-9][0-9]+) ' \
        <<<"$line" || fail "fewer than 2 simulation or pilot ranks"
    grep -q "steps=$steps " <<<"$line" || fail "not $steps steps"
    grep -q ' conserved=yes ' <<<"$line" ||
        fail "the simulation did not conserve its heat"
    grep -q " analyses_ok=$steps/$steps\$" <<<"$line" ||
        fail "not every analysis matched rank 0's"
    ;;
*)
    fail "unknown mode"
    ;;
esac
# CPARSL_EXPECT_LAYOUT: a piece of the run log's layout line that must be
# there ("4 node manager(s), 2 sub-interchange(s)"), so a run that quietly
# fell back to another layout fails.
if [[ -n ${CPARSL_EXPECT_LAYOUT:-} ]]; then
    grep -qF "$CPARSL_EXPECT_LAYOUT" runinfo/*/cparsl.log ||
        fail "the run log does not say '$CPARSL_EXPECT_LAYOUT'"
fi
echo "check_example: $mode: ok"
