# bench.cmake - smoke tests of cparsl-bench (included by tests/CMakeLists.txt).
#
# These check that every mode runs, prints well-formed JSON with its fields,
# gets the right answer, and that bad arguments exit 2 with a message.  No
# timing is asserted: CI machines are shared and noisy.  What is asserted is
# a counted property: no allocation per task in the steady state
# (allocs_per_task <= 0.01), outside sanitizer builds, where the bench cannot
# count (it reports null).
#
# That count is not quite independent of timing: the task free list grows
# to the most tasks ever alive at once, which is about the window plus one
# DFK batch, and a noisy machine can push that high-water mark past what
# the warm-up reached.  That growth is bounded by about one window (under
# 1,000 objects with --window 1000, measured with two benches sharing two
# cores), so the assertion runs 200,000 tasks, where 0.01 per task allows
# 2,000.  With 20,000 tasks it would fail now and then on a busy machine.

if(NOT TARGET cparsl-bench)
  return()
endif()

find_package(Python3 COMPONENTS Interpreter QUIET)

set(CPARSL_BENCH_ARGS_THROUGHPUT throughput --executor threadpool
    --tasks 20000 --workers 2 --window 1000)
set(CPARSL_BENCH_ARGS_ALLOCS throughput --executor threadpool
    --tasks 200000 --workers 2 --window 1000)
set(CPARSL_BENCH_ARGS_LATENCY latency --executor threadpool --tasks 2000
    --workers 2)
set(CPARSL_BENCH_ARGS_CHAIN dag --shape chain --tasks 10000 --workers 2)
set(CPARSL_BENCH_ARGS_FANIN dag --shape fanin --tasks 10000 --workers 2)
set(CPARSL_BENCH_ARGS_REPEAT throughput --tasks 2000 --window 100 --repeat 3
    --warmup 500 --workers 2)
set(CPARSL_BENCH_COMMON mode executor isolation tasks workers seconds
    tasks_per_s allocs_per_task)

# One bench test: NAME, then ARGS (the bench's), then checker options.
function(cparsl_bench_test name)
  cmake_parse_arguments(B "" "RC;LINES;STDERR" "ARGS;REQUIRE;CHECKS;REGEX"
                        ${ARGN})
  if(NOT DEFINED B_RC)
    set(B_RC 0)
  endif()
  if(NOT DEFINED B_LINES)
    set(B_LINES 1)
  endif()
  if(Python3_Interpreter_FOUND)
    set(check --rc ${B_RC} --lines ${B_LINES})
    if(B_REQUIRE)
      string(REPLACE ";" "," req "${B_REQUIRE}")
      list(APPEND check --require ${req})
    endif()
    if(B_STDERR)
      list(APPEND check "--stderr=${B_STDERR}")
    endif()
    add_test(NAME bench.${name}
      COMMAND ${Python3_EXECUTABLE}
              ${CMAKE_CURRENT_BINARY_DIR}/bench_check.py ${check} ${B_CHECKS}
              -- $<TARGET_FILE:cparsl-bench> ${B_ARGS}
      WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  else()
    # Without Python: the exit status and a pattern only.
    add_test(NAME bench.${name} COMMAND cparsl-bench ${B_ARGS}
      WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
    if(NOT B_RC EQUAL 0)
      set_tests_properties(bench.${name} PROPERTIES WILL_FAIL TRUE)
    elseif(B_REGEX)
      set_tests_properties(bench.${name} PROPERTIES
        PASS_REGULAR_EXPRESSION "${B_REGEX}")
    endif()
  endif()
  set_tests_properties(bench.${name} PROPERTIES TIMEOUT 120
    ENVIRONMENT "${CPARSL_TEST_ENV}" LABELS bench)
endfunction()

# Sanitizers replace malloc, and the bench then reports null.
if(CPARSL_SANITIZE)
  set(CPARSL_BENCH_COUNTED --null allocs_per_task)
else()
  set(CPARSL_BENCH_COUNTED --number allocs_per_task)
endif()

cparsl_bench_test(throughput ARGS ${CPARSL_BENCH_ARGS_THROUGHPUT}
  REQUIRE ${CPARSL_BENCH_COMMON} window allocs
  CHECKS --equal mode=throughput --equal isolation=thread
         --equal tasks=20000 --equal workers=2 --equal window=1000
         --equal ok=true ${CPARSL_BENCH_COUNTED}
  REGEX "\"mode\":\"throughput\".*\"tasks_per_s\":")
if(NOT CPARSL_SANITIZE)
  cparsl_bench_test(throughput_allocs ARGS ${CPARSL_BENCH_ARGS_ALLOCS}
    REQUIRE ${CPARSL_BENCH_COMMON} allocs
    CHECKS --equal ok=true --max allocs_per_task=0.01
    REGEX "\"allocs_per_task\":0\\.00")
endif()
cparsl_bench_test(latency ARGS ${CPARSL_BENCH_ARGS_LATENCY}
  REQUIRE ${CPARSL_BENCH_COMMON} p50_us p99_us mean_us
  CHECKS --equal mode=latency --equal tasks=2000 --equal ok=true
  REGEX "\"mode\":\"latency\".*\"p50_us\":.*\"p99_us\":")
cparsl_bench_test(dag_chain ARGS ${CPARSL_BENCH_ARGS_CHAIN}
  REQUIRE ${CPARSL_BENCH_COMMON} shape answer expected
  CHECKS --equal shape=chain --equal answer=10000 --equal ok=true
  REGEX "\"shape\":\"chain\".*\"ok\":true")
cparsl_bench_test(dag_fanin ARGS ${CPARSL_BENCH_ARGS_FANIN}
  REQUIRE ${CPARSL_BENCH_COMMON} shape answer expected
  CHECKS --equal shape=fanin --equal answer=50005000 --equal ok=true
  REGEX "\"shape\":\"fanin\".*\"ok\":true")
cparsl_bench_test(repeat ARGS ${CPARSL_BENCH_ARGS_REPEAT} LINES 4
  REQUIRE ${CPARSL_BENCH_COMMON} window
  CHECKS --summary median_tasks_per_s
  REGEX "\"summary\":true.*\"median_tasks_per_s\":")
# --store hdf5: the run file is written and flushed inside each timed run.
cparsl_bench_test(store_hdf5 ARGS throughput --tasks 2000 --window 100
  --workers 2 --warmup 100 --store hdf5
  REQUIRE ${CPARSL_BENCH_COMMON} store
  CHECKS --equal store=hdf5 --equal ok=true
  REGEX "\"store\":\"hdf5\".*\"ok\":true")
cparsl_bench_test(bad_store ARGS throughput --store sqlite RC 2 LINES 0
  STDERR "unknown store 'sqlite'")
cparsl_bench_test(help ARGS --help LINES 0 REGEX "usage: cparsl-bench")

# Bad arguments: exit 2, nothing on stdout, one line on stderr naming it.
cparsl_bench_test(bad_mode ARGS frobnicate RC 2 LINES 0
  STDERR "unknown mode 'frobnicate'")
cparsl_bench_test(bad_option ARGS throughput --tasks 10 --bogus 3 RC 2
  LINES 0 STDERR "unknown option '--bogus'")
cparsl_bench_test(bad_count ARGS throughput --tasks 12x RC 2 LINES 0
  STDERR "--tasks needs a whole number, got '12x'")
cparsl_bench_test(zero_count ARGS latency --tasks 0 RC 2 LINES 0
  STDERR "--tasks must be at least 1")
cparsl_bench_test(zero_workers ARGS throughput --workers 0 RC 2 LINES 0
  STDERR "--workers must be at least 1")
cparsl_bench_test(bad_executor ARGS throughput --executor nosuch RC 2
  LINES 0 STDERR "unknown executor 'nosuch'")
cparsl_bench_test(bad_shape ARGS dag --shape tree RC 2 LINES 0
  STDERR "unknown shape 'tree'")
cparsl_bench_test(missing_value ARGS throughput --window RC 2 LINES 0
  STDERR "--window needs a value")
cparsl_bench_test(no_mode ARGS --tasks 5 RC 2 LINES 0 STDERR "no mode given")

# scale: the emulation (128 slots = 4 emulated managers behind the 2
# sub-interchanges of a 3-rank job) must run, label itself and report
# rank 0's memory; its bad arguments exit 2 before anything starts.
if(CPARSL_MPI_TESTS AND Python3_Interpreter_FOUND)
  add_test(NAME bench.scale
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_BINARY_DIR}/bench_check.py
            --rc 0 --lines 1
            --require emulation,slots,managers,sub_interchanges,duration_s,offered_load_per_s,rank0_bytes_per_slot,rank0_cpu_s,tasks_per_s
            --equal emulation=true --equal slots=128 --equal managers=4
            --equal sub_interchanges=2 --equal ok=true --equal tasks=3000
            -- ${CPARSL_MPIEXEC} ${MPIEXEC_NUMPROC_FLAG} 3
            $<TARGET_FILE:cparsl-bench> scale --slots 128 --duration 0.002
            --tasks 3000 --warmup 0
    WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(bench.scale PROPERTIES TIMEOUT 120
    ENVIRONMENT "${CPARSL_MPI_TEST_ENV}" LABELS "bench;mpi" RUN_SERIAL TRUE)
endif()
cparsl_bench_test(scale_no_duration ARGS scale --slots 64 RC 2 LINES 0
  STDERR "scale needs --duration")
cparsl_bench_test(scale_not_mpi ARGS scale --slots 64 --duration 0.1 RC 2
  LINES 0 STDERR "--slots must be a multiple of 32 x (ranks - 1)")
cparsl_bench_test(scale_workers ARGS scale --duration 1 --workers 2 RC 2
  LINES 0 STDERR "option --workers does not apply to mode scale")

# The checker: runs the bench and judges its exit status, stdout and stderr.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/bench_check.py [=[
"""bench_check.py - run cparsl-bench and check what it prints (generated
by tests/bench.cmake).

  bench_check.py [options] -- COMMAND...

--rc N          expected exit status (default 0)
--lines N       JSON lines expected on stdout (run lines, plus the summary)
--require F,..  fields every JSON line must have
--equal F=V     run lines: field F equals V (compared as JSON text)
--max F=X       run lines: numeric field F <= X (null fails)
--null F        run lines: field F is null
--number F      run lines: field F is a number
--summary F     the last line is a summary with numeric field F
--stderr TEXT   with a non-zero --rc: stderr is one line containing TEXT
"""
import argparse
import json
import subprocess
import sys


def fail(msg, out="", err=""):
    sys.stderr.write("bench_check: FAIL: %s\n" % msg)
    if out:
        sys.stderr.write("--- stdout ---\n%s" % out)
    if err:
        sys.stderr.write("--- stderr ---\n%s" % err)
    sys.exit(1)


def pairs(items):
    out = []
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep:
            fail("bad check '%s' (expected FIELD=VALUE)" % item)
        out.append((key, val))
    return out


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        fail("usage: bench_check.py [options] -- COMMAND...")
    sep = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("--rc", type=int, default=0)
    ap.add_argument("--lines", type=int, default=1)
    ap.add_argument("--require", default="")
    ap.add_argument("--equal", action="append")
    ap.add_argument("--max", action="append")
    ap.add_argument("--null", action="append", default=[])
    ap.add_argument("--number", action="append", default=[])
    ap.add_argument("--summary")
    ap.add_argument("--stderr")
    opt = ap.parse_args(argv[:sep])
    cmd = argv[sep + 1:]

    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    out, err = p.stdout, p.stderr
    if p.returncode != opt.rc:
        fail("exit status %d, expected %d" % (p.returncode, opt.rc), out, err)
    if opt.rc != 0:
        if out:
            fail("a failing run printed on stdout", out, err)
        lines = err.splitlines()
        if len(lines) != 1:
            fail("expected one line on stderr, got %d" % len(lines), out, err)
        if opt.stderr and opt.stderr not in lines[0]:
            fail("stderr does not mention %r" % opt.stderr, out, err)
        return
    if opt.lines == 0:
        if "usage" in " ".join(cmd) or "--help" in cmd:
            if "usage:" not in out:
                fail("no usage text", out, err)
        return

    lines = out.splitlines()
    if len(lines) != opt.lines:
        fail("%d lines on stdout, expected %d" % (len(lines), opt.lines),
             out, err)
    objs = []
    for n, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
        except ValueError as e:
            fail("line %d is not JSON: %s" % (n, e), out, err)
        if not isinstance(obj, dict):
            fail("line %d is not a JSON object" % n, out, err)
        for f in filter(None, opt.require.split(",")):
            if f not in obj:
                fail("line %d has no field '%s'" % (n, f), out, err)
        objs.append(obj)
    runs = objs
    if opt.summary:
        summary, runs = objs[-1], objs[:-1]
        if summary.get("summary") is not True:
            fail("the last line is not a summary", out, err)
        if summary.get("runs") != len(runs):
            fail("summary says %r runs, saw %d" % (summary.get("runs"),
                                                    len(runs)), out, err)
        v = summary.get(opt.summary)
        if not isinstance(v, (int, float)) or v <= 0:
            fail("summary field '%s' is %r" % (opt.summary, v), out, err)
    for n, obj in enumerate(runs, 1):
        for key, val in pairs(opt.equal):
            if json.dumps(obj.get(key)) != val and str(obj.get(key)) != val:
                fail("run %d: %s is %r, expected %s" % (n, key, obj.get(key),
                                                        val), out, err)
        for key, val in pairs(opt.max):
            v = obj.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                fail("run %d: %s is %r, expected a number" % (n, key, v),
                     out, err)
            if v > float(val):
                fail("run %d: %s is %r, expected <= %s" % (n, key, v, val),
                     out, err)
        for key in opt.null:
            if key not in obj or obj[key] is not None:
                fail("run %d: %s is %r, expected null" % (n, key,
                                                          obj.get(key)),
                     out, err)
        for key in opt.number:
            v = obj.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                fail("run %d: %s is %r, expected a number" % (n, key, v),
                     out, err)
        for key in ("seconds", "tasks_per_s"):
            v = obj.get(key)
            if key in obj and (not isinstance(v, (int, float)) or v < 0):
                fail("run %d: %s is %r" % (n, key, v), out, err)


main()
]=])

# bench/compare: the MPI pilot against mpi4py.futures (docs/performance.md,
# "Against mpi4py.futures"), with tiny counts and one round: it must run
# both sides and print a summary with the medians, the ratios and the
# targets' verdicts.  No timing is asserted.  Without mpi4py it exits 77,
# which CTest reports as skipped (scripts/deps installs python3-mpi4py).
# One MPI job at a time, like the other MPI tests.
if(CPARSL_MPI_TESTS AND Python3_Interpreter_FOUND)
  add_test(NAME bench.compare
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_BINARY_DIR}/compare_check.py
            ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/bench/compare
            --repeat 1 --bench $<TARGET_FILE:cparsl-bench>
            --mpiexec ${MPIEXEC_EXECUTABLE} --workers 2 --tasks 2000
            --latency-tasks 200 --peer-tasks 200 --peer-latency-tasks 50
            --map-tasks 2000 --chunksize 100 --window 100 --warmup 50
            --timeout 60
    WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(bench.compare PROPERTIES TIMEOUT 120
    SKIP_RETURN_CODE 77 ENVIRONMENT "${CPARSL_MPI_TEST_ENV}"
    LABELS "bench;mpi" RUN_SERIAL TRUE)
  # A bad argument: exit 2, one line naming it, before anything starts.
  add_test(NAME bench.compare_bad_count
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_BINARY_DIR}/bench_check.py
            --rc 2 --lines 0 "--stderr=--repeat must be at least 1" --
            ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/bench/compare
            --repeat 0
    WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(bench.compare_bad_count PROPERTIES TIMEOUT 60
    LABELS bench)
endif()

file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/compare_check.py [=[
"""compare_check.py - run bench/compare and check what it prints
(generated by tests/bench.cmake).

  compare_check.py COMMAND...

Passes exit 77 (no mpi4py) through, for CTest's SKIP_RETURN_CODE.
"""
import json
import subprocess
import sys

SIDES = {"mpi4py": {"submit", "latency", "map"},
         "cparsl": {"throughput", "latency"}}
RATIOS = ("throughput_ratio", "latency_ratio_p50", "latency_ratio_p99",
          "map_ratio")
NUMBERS = ("cparsl_tasks_per_s", "peer_submit_tasks_per_s", "cparsl_p50_us",
           "peer_p50_us", "cparsl_p99_us", "peer_p99_us",
           "peer_map_tasks_per_s", "cparsl_tasks", "peer_tasks",
           "peer_map_tasks") + RATIOS


def fail(msg, out="", err=""):
    sys.stderr.write("compare_check: FAIL: %s\n" % msg)
    if out:
        sys.stderr.write("--- stdout ---\n%s" % out)
    if err:
        sys.stderr.write("--- stderr ---\n%s" % err)
    sys.exit(1)


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def main():
    p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    out, err = p.stdout, p.stderr
    if p.returncode == 77:
        sys.stderr.write("compare_check: skipped: %s" % err)
        sys.exit(77)
    if p.returncode != 0:
        fail("exit status %d" % p.returncode, out, err)
    try:
        objs = [json.loads(x) for x in out.splitlines()]
    except ValueError as e:
        fail("a line is not JSON: %s" % e, out, err)
    if not objs or objs[-1].get("summary") is not True:
        fail("the last line is not a summary", out, err)
    summary, lines = objs[-1], objs[:-1]
    runs = summary.get("runs")
    if not isinstance(runs, int) or runs < 1:
        fail("summary runs is %r" % runs, out, err)
    for side, modes in SIDES.items():
        for mode in modes:
            got = [x for x in lines
                   if x.get("side") == side and x.get("mode") == mode]
            if len(got) != runs:
                fail("%d %s %s lines for %d runs" % (len(got), side, mode,
                                                     runs), out, err)
            for x in got:
                if not number(x.get("tasks_per_s")):
                    fail("%s %s: tasks_per_s is %r" % (
                        side, mode, x.get("tasks_per_s")), out, err)
    if len(lines) != runs * sum(len(m) for m in SIDES.values()):
        fail("%d measurement lines for %d runs" % (len(lines), runs),
             out, err)
    for f in NUMBERS:
        if not number(summary.get(f)):
            fail("summary %s is %r" % (f, summary.get(f)), out, err)
    for f in ("throughput_target_met", "latency_target_met"):
        if not isinstance(summary.get(f), bool):
            fail("summary %s is %r" % (f, summary.get(f)), out, err)


main()
]=])
