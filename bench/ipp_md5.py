#!/usr/bin/python3
"""The seed notebook (../shared/seeds/002_846305c772941cea.txt) as a script, timed by phase.

"Map-style computation via SPMD using IPython Parallel Broadcast View": N engines, 5 files of
1 KiB random bytes per engine, the md5 of every file computed locally with `map` and then as one
SPMD `apply` on a BroadcastView (rank scattered, size pushed, cloudpickle on).

    /usr/bin/python3 bench/ipp_md5.py --engines 8

Prints human-readable progress on stderr and one line `RESULT {json}` on stdout with the phase
times in seconds (files, local_map, start, scatter_push, apply, stop, whole) and the memory of
the processes (this client, the controller, engines, nannies) just after the cluster started.

Runs with IPython Parallel 7.1 (Debian's python3-ipyparallel) and python3-cloudpickle. The
engine registration timeout (`Cluster.engine_timeout`, 60 s by default) is raised to 300 s:
starting 100 engines takes 50-90 s on this 2-core machine, so the default can fail at 100.
"""

import time

T_SCRIPT = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from hashlib import md5  # noqa: E402
from itertools import chain  # noqa: E402
from pathlib import Path  # noqa: E402


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def descendants(root_pid):
    """The pids of every process below `root_pid` (children, grandchildren, ...)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: split after the last ")"
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def memory_of(pids):
    """Sum of PSS and of RSS (bytes) of `pids`, from /proc/<pid>/smaps_rollup."""
    pss = rss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return pss, rss


# --- the notebook's functions -------------------------------------------------------------------


def get_partition(n_items: int, rank: int, size: int) -> tuple[int, int]:
    """
    Compute the partition

    Returns (start, end) of partition
    """
    chunk_size = n_items // size
    if n_items % size:
        chunk_size += 1
    start = rank * chunk_size
    if rank + 1 == size:
        end = n_items
    else:
        end = start + chunk_size
    return (start, end)


def compute_one(fname):
    hasher = md5()
    with open(fname, "rb") as f:
        hasher.update(f.read())
    return hasher.hexdigest()


def spmd_task(tmp_path, rank, size):
    # identify all inputs (sorted, as the Deno version does; the notebook relies on glob order)
    all_input_files = sorted(Path(tmp_path).glob("*.txt"))
    # partition inputs
    n_items = len(all_input_files)
    start, end = get_partition(n_items, rank, size)
    my_input_files = all_input_files[start:end]
    # compute result
    return list(map(compute_one, my_input_files))


# --- the script ---------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=100)
    parser.add_argument("--files-per-engine", type=int, default=5)
    parser.add_argument(
        "--engine-timeout",
        type=int,
        default=300,
        help="seconds to wait for every engine to register (IPython's default: 60)",
    )
    args = parser.parse_args()

    # A private IPython profile directory: cluster files and engine logs go there, not to ~.
    ipython_dir = tempfile.mkdtemp(prefix="ipp-md5-ipython-")
    os.environ["IPYTHONDIR"] = ipython_dir
    t = time.perf_counter()
    import ipyparallel as ipp

    times = {"import": time.perf_counter() - t}
    result = {"engines": args.engines, "ipyparallel": ipp.__version__}

    tmp_dir = tempfile.TemporaryDirectory()
    cluster = None
    try:
        # Set up our fake workload: a bunch of random files, 5 per engine.
        t = time.perf_counter()
        tmp_path = Path(tmp_dir.name)
        n_items = args.engines * args.files_per_engine
        for i in range(n_items):
            with (tmp_path / f"file-{i:03}.txt").open("wb") as f:
                f.write(os.urandom(1024))
        input_files = sorted(tmp_path.glob("*.txt"))
        times["files"] = time.perf_counter() - t
        log(f"{len(input_files)} input files in {tmp_path}")

        t = time.perf_counter()
        local_result = list(map(compute_one, input_files))
        times["local_map"] = time.perf_counter() - t

        # Now it's time to do it in parallel.
        t = time.perf_counter()
        cluster = ipp.Cluster(
            n=args.engines, log_level=logging.WARNING, engine_timeout=args.engine_timeout
        )
        rc = cluster.start_and_connect_sync()
        times["start"] = time.perf_counter() - t
        pids = [os.getpid(), *descendants(os.getpid())]
        pss, rss = memory_of(pids)
        result.update(cluster_processes=len(pids), cluster_pss=pss, cluster_rss=rss)

        broadcast_view = rc.broadcast_view()

        # Distribute rank and size; enable cloudpickle, which handles imports.
        t = time.perf_counter()
        broadcast_view.scatter("rank", rc.ids, flatten=True)
        broadcast_view["size"] = size = len(rc)
        times["scatter_rank_push_size"] = time.perf_counter() - t
        t2 = time.perf_counter()
        broadcast_view.use_cloudpickle().get()
        times["use_cloudpickle"] = time.perf_counter() - t2
        times["scatter_push"] = time.perf_counter() - t

        # The SPMD task as a single task on all engines.
        t = time.perf_counter()
        ar = broadcast_view.apply(spmd_task, tmp_path, ipp.Reference("rank"), size)
        parallel_result = list(chain(*ar))
        times["apply"] = time.perf_counter() - t

        log("parallel:", parallel_result[:6])
        log("local:   ", local_result[:6])
        assert parallel_result == local_result, "parallel result differs from the local result"
        log(f"parallel result equals local result ({len(parallel_result)} md5s)")

        t = time.perf_counter()
        cluster.stop_cluster_sync()
        cluster = None
        times["stop"] = time.perf_counter() - t
    finally:
        if cluster is not None:
            try:
                cluster.stop_cluster_sync()
            except Exception as e:  # noqa: BLE001
                log(f"could not stop the cluster: {e}")
        tmp_dir.cleanup()
        shutil.rmtree(ipython_dir, ignore_errors=True)
    times["whole"] = time.perf_counter() - T_SCRIPT
    result["times"] = times
    log(
        f"engines: {args.engines}  start: {times['start']:.3f} s  scatter/push: "
        f"{times['scatter_push']:.3f} s  apply: {times['apply']:.3f} s  stop: "
        f"{times['stop']:.3f} s  whole: {times['whole']:.3f} s"
    )
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
