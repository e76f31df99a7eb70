#!/usr/bin/python3
"""Latency of an empty broadcast `apply` on IPython Parallel's BroadcastView.

Starts ONE cluster of `--engines` engines (starting 100 IPython engines takes ~90 s and ~12 GiB:
do it once), then times `rc.broadcast_view(targets=ids[:k]).apply_sync(lambda: None)` for every
k of `--ks`, after `--warmup` untimed calls.

    /usr/bin/python3 bench/ipp_broadcast.py --engines 100 --ks 2,8,32,100 --reps 20

Standalone, it prints one line `RESULT {json}` on stdout (milliseconds). With `--serve` it
prints `READY {json}` once the cluster is up, then answers commands read from stdin, one per
line, so that a driver can interleave these measurements with others:

    measure K REPS WARMUP [direct]  ->  SAMPLES {"k": K, "samples": [ms, ...]}
    (direct: the same call on a DirectView, rc[ids[:k]])
    quit (or end of input)  ->  STOPPED {"stop": seconds}
"""

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ipp_md5 import descendants, log, memory_of  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=100)
    parser.add_argument("--ks", default="2,8,32,100")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--engine-timeout", type=int, default=300)
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args()

    ipython_dir = tempfile.mkdtemp(prefix="ipp-broadcast-ipython-")
    os.environ["IPYTHONDIR"] = ipython_dir
    import ipyparallel as ipp

    cluster = None
    try:
        t = time.perf_counter()
        cluster = ipp.Cluster(
            n=args.engines, log_level=logging.WARNING, engine_timeout=args.engine_timeout
        )
        rc = cluster.start_and_connect_sync()
        start = time.perf_counter() - t
        ids = sorted(rc.ids)
        pids = [os.getpid(), *descendants(os.getpid())]
        pss, rss = memory_of(pids)
        ready = {
            "engines": len(ids),
            "start": start,
            "cluster_processes": len(pids),
            "cluster_pss": pss,
            "cluster_rss": rss,
            "ipyparallel": ipp.__version__,
        }
        views = {}

        def measure(k, reps, warmup, direct=False):
            if (k, direct) not in views:
                views[(k, direct)] = rc[ids[:k]] if direct else rc.broadcast_view(targets=ids[:k])
            view = views[(k, direct)]
            for _ in range(warmup):
                view.apply_sync(lambda: None)
            samples = []
            for _ in range(reps):
                t = time.perf_counter()
                result = view.apply_sync(lambda: None)
                samples.append((time.perf_counter() - t) * 1000)
                assert result == [None] * k, result
            return samples

        if args.serve:
            print("READY " + json.dumps(ready), flush=True)
            for line in sys.stdin:
                words = line.split()
                if not words:
                    continue
                if words[0] == "quit":
                    break
                if words[0] == "measure":
                    k, reps, warmup = (int(w) for w in words[1:4])
                    samples = measure(k, reps, warmup, words[4:5] == ["direct"])
                    print("SAMPLES " + json.dumps({"k": k, "samples": samples}), flush=True)
                else:
                    print("ERROR " + json.dumps({"line": line.strip()}), flush=True)
        else:
            ready["broadcast"] = {}
            for k in (int(k) for k in args.ks.split(",")):
                samples = measure(min(k, len(ids)), args.reps, args.warmup)
                ready["broadcast"][str(k)] = {
                    "median": statistics.median(samples),
                    "min": min(samples),
                    "samples": samples,
                }
                log(f"k={k}: median {statistics.median(samples):.1f} ms")
        t = time.perf_counter()
        cluster.stop_cluster_sync()
        cluster = None
        stop = time.perf_counter() - t
        if args.serve:
            print("STOPPED " + json.dumps({"stop": stop}), flush=True)
        else:
            ready["stop"] = stop
            print("RESULT " + json.dumps(ready), flush=True)
    finally:
        if cluster is not None:
            try:
                cluster.stop_cluster_sync()
            except Exception as e:  # noqa: BLE001
                log(f"could not stop the cluster: {e}")
        shutil.rmtree(ipython_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
