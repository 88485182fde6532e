"""mpi4py_peer.py: the no-op workload of cparsl-bench, run through
mpi4py.futures, for bench/compare.

Run it as the client of a world that mpi4py.futures has split into one
client and N-1 workers (each worker rank runs one task at a time):

  mpiexec -n W+1 /usr/bin/python3 -m mpi4py.futures bench/mpi4py_peer.py \
      --tasks N --window K --latency-tasks M --map-tasks N2 --chunksize C \
      --warmup N3 --run I

and it prints one JSON line per measurement on stdout:

- submit: N calls of executor.submit(noop) with at most K futures in
  flight (the oldest is waited on and dropped before the next submit), as
  cparsl-bench's throughput mode does; timed from the first submit to the
  last result.
- latency: M sequential executor.submit(noop).result() round trips, each
  timed; p50 and p99 by nearest rank, as cparsl-bench reports them.
- map: list(executor.map(noop, range(N2), chunksize=C)), timed from the
  call to the last result.

Each comes after an untimed warm-up of the same kind.  bench/compare
checks the arguments before it starts this script, so only a crude check
is made here.
"""
import argparse
import collections
import json
import sys
import time

import mpi4py
from mpi4py import MPI
from mpi4py.futures import MPIPoolExecutor


def noop(_=None):
    return None


def submit_run(ex, tasks, window):
    inflight = collections.deque()
    t0 = time.perf_counter()
    for _ in range(tasks):
        if len(inflight) >= window:
            inflight.popleft().result()
        inflight.append(ex.submit(noop))
    while inflight:
        inflight.popleft().result()
    return time.perf_counter() - t0


def latency_run(ex, tasks):
    lat = []
    for _ in range(tasks):
        t0 = time.perf_counter()
        ex.submit(noop).result()
        lat.append((time.perf_counter() - t0) * 1e6)
    lat.sort()
    n = len(lat)
    # Nearest rank, as cparsl-bench: the ceil(p*n)-th smallest.
    return {"p50_us": lat[max(0, -(-n * 50 // 100) - 1)],
            "p99_us": lat[max(0, -(-n * 99 // 100) - 1)],
            "mean_us": sum(lat) / n, "min_us": lat[0], "max_us": lat[-1]}


def map_run(ex, tasks, chunksize):
    t0 = time.perf_counter()
    for _ in ex.map(noop, range(tasks), chunksize=chunksize):
        pass
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=20000)
    p.add_argument("--window", type=int, default=10000)
    p.add_argument("--latency-tasks", type=int, default=2000)
    p.add_argument("--map-tasks", type=int, default=200000)
    p.add_argument("--chunksize", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--run", type=int, default=1)
    a = p.parse_args()
    workers = MPI.COMM_WORLD.Get_size() - 1
    if workers < 1:
        sys.exit("mpi4py_peer: needs mpiexec -n 2 or more "
                 "under python3 -m mpi4py.futures")
    common = {"peer": "mpi4py.futures", "mpi4py": mpi4py.__version__,
              "python": sys.version.split()[0],
              "mpi": MPI.Get_library_version().split(",")[0].strip("\0 \n"),
              "workers": workers, "run": a.run}

    def emit(mode, tasks, seconds, **extra):
        line = {"mode": mode, **common, "tasks": tasks,
                "seconds": round(seconds, 6),
                "tasks_per_s": round(tasks / seconds, 1)}
        line.update(extra)
        print(json.dumps(line), flush=True)

    with MPIPoolExecutor() as ex:
        submit_run(ex, min(a.warmup, a.tasks), a.window)
        emit("submit", a.tasks, submit_run(ex, a.tasks, a.window),
             window=a.window)
        latency_run(ex, min(a.warmup, a.latency_tasks))
        t0 = time.perf_counter()
        lat = latency_run(ex, a.latency_tasks)
        emit("latency", a.latency_tasks, time.perf_counter() - t0,
             **{k: round(v, 2) for k, v in lat.items()})
        map_run(ex, min(a.warmup, a.map_tasks), a.chunksize)
        emit("map", a.map_tasks, map_run(ex, a.map_tasks, a.chunksize),
             chunksize=a.chunksize)


if __name__ == "__main__":
    main()
