#!/usr/bin/python3
"""Tree allreduce on IPython Parallel engines, the contender of `bench/allreduce.ts`.

The engines are wired into a binary tree the way the seed script does it (`bintree(ids)`, a
communicator on every engine, the client passing each one its peers' addresses), with a
communicator written here over pyzmq: every engine binds one PULL socket (its tree inbox) and
connects a PUSH socket to its parent and to each child. `allreduce` folds the engine's value with
its children's values as they arrive, sends the result up, and passes the root's total back down
the tree: the same message pattern as deno-parallel's `TreeCommunicator`, at most two messages in
any inbox. Values travel as pickle protocol 5 with out-of-band buffers, so a numpy array crosses
as one raw frame.

    /usr/bin/python3 bench/ipp_bintree.py --engines 8 --iters 20

Standalone, it prints `RESULT {json}` (milliseconds). With `--serve` it prints `READY {json}` once
the cluster is up and wired, then answers commands read from stdin, one per line, so that a
driver can interleave these measurements with its own:

    measure KIND ITERS   ->  SAMPLES {"kind": KIND, "inside": ms, "single": [ms, ...],
                                      "client": [ms, ...]}
    quit (or end of input)  ->  STOPPED {"stop": seconds}

KIND is `scalar` (a float per engine) or `mib` (a 1 MiB float64 numpy array per engine).
"inside" is the mean time of one allreduce timed inside the engines (the slowest engine's mean
over ITERS back-to-back calls, after one untimed call); "single" is, for single calls each made
by its own `execute`, the longest time an engine spent inside the call (it includes the skew of
the engines starting the task); "client" is each round trip of
`view.execute("r = com.allreduce(add, x)")` from the client.

On the engines this file is imported as a module (`from ipp_bintree import TreeCom`).
"""

import functools
import json
import os
import pickle
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
MIB_LENGTH = 1024 * 1024 // 8
# How long any one call to the engines may take before the bench gives up on it, in seconds.
CALL_TIMEOUT_S = 300


def bintree(ids, parent=None):
    """The parent of every id: the first id is the root, the rest is split in two halves (the
    left one the smaller) laid out the same way under their first ids. Keys come in pre-order."""
    tree = {}

    def layout(start, end, parent):
        if end <= start:
            return
        root = ids[start]
        tree[root] = parent
        middle = start + 1 + (end - start - 1) // 2
        layout(start + 1, middle, root)
        layout(middle, end, root)

    layout(0, len(ids), parent)
    return tree


class TreeCom:
    """One engine's end of the tree: a PULL inbox, PUSH sockets to its parent and children."""

    def __init__(self, id):
        import zmq

        self.id = id
        self._zmq = zmq
        self.context = zmq.Context.instance()
        self.inbox = self.context.socket(zmq.PULL)
        port = self.inbox.bind_to_random_port("tcp://127.0.0.1")
        self.url = "tcp://127.0.0.1:%d" % port
        self.parent = None
        self.children = []
        self.seq = 0
        self.held = {}
        self.max_held = 0

    def connect(self, urls, tree):
        """Connects to the parent and the children; `urls` maps every engine id to its inbox."""
        zmq = self._zmq
        self.parent = tree[self.id]
        self.children = [c for c, p in tree.items() if p == self.id]
        self.to_parent = None
        if self.parent is not None:
            self.to_parent = self.context.socket(zmq.PUSH)
            self.to_parent.connect(urls[self.parent])
        self.to_children = {}
        for child in self.children:
            sock = self.context.socket(zmq.PUSH)
            sock.connect(urls[child])
            self.to_children[child] = sock

    def _send(self, sock, kind, seq, value):
        buffers = []
        payload = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        header = json.dumps([kind, seq, self.id]).encode()
        sock.send_multipart([header, payload, *[b.raw() for b in buffers]], copy=False)

    def _receive(self, kind, seq, senders, deadline):
        """Waits for a `kind` message of reduction `seq` from any of `senders`."""
        while True:
            for sender in senders:
                key = (kind, seq, sender)
                if key in self.held:
                    return sender, self.held.pop(key)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    "engine %d: no %s message from %s within the deadline" % (self.id, kind, senders)
                )
            if not self.inbox.poll(left * 1000):
                continue
            frames = self.inbox.recv_multipart(copy=False)
            k, s, sender = json.loads(frames[0].bytes)
            value = pickle.loads(frames[1].buffer, buffers=[f.buffer for f in frames[2:]])
            self.held[(k, s, sender)] = value
            self.max_held = max(self.max_held, len(self.held))

    def reduce(self, f, value, flat=True, all=False, timeout=30.0):
        """Folds `value` up the tree with `f`; the root returns the total, others their subtree's
        partial value. With `all`, the total comes back down and every engine returns it."""
        deadline = time.monotonic() + timeout
        self.seq += 1
        seq = self.seq
        if not flat:
            value = functools.reduce(f, value)
        waiting = list(self.children)
        while waiting:
            sender, got = self._receive("up", seq, waiting, deadline)
            waiting.remove(sender)
            value = f(value, got)
        if self.parent is not None:
            self._send(self.to_parent, "up", seq, value)
        if all:
            if self.parent is not None:
                _, value = self._receive("down", seq, [self.parent], deadline)
            for sock in self.to_children.values():
                self._send(sock, "down", seq, value)
        return value

    def allreduce(self, f, value, flat=True, timeout=30.0):
        return self.reduce(f, value, flat=flat, all=True, timeout=timeout)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


class Timed:
    """A view whose calls fail with TimeoutError after `timeout` seconds instead of waiting forever
    (an engine of a 100-engine cluster once never answered the first call)."""

    def __init__(self, view, timeout):
        self.view = view
        self.timeout = timeout

    def execute(self, code):
        return self.view.execute(code, block=False).get(self.timeout)

    def pull(self, name):
        return self.view.pull(name, block=False).get(self.timeout)

    def push(self, ns):
        return self.view.push(ns, block=False).get(self.timeout)

    def scatter(self, name, seq, flatten=False):
        return self.view.scatter(name, seq, flatten=flatten, block=False).get(self.timeout)


class Bench:
    """An IPython Parallel cluster of `n` engines wired into a tree."""

    def __init__(self, n, engine_timeout):
        import logging
        import tempfile

        self.ipython_dir = tempfile.mkdtemp(prefix="ipp-bintree-ipython-")
        os.environ["IPYTHONDIR"] = self.ipython_dir
        import ipyparallel as ipp

        t = time.perf_counter()
        self.cluster = ipp.Cluster(n=n, log_level=logging.WARNING, engine_timeout=engine_timeout)
        self.rc = self.cluster.start_and_connect_sync()
        self.start_seconds = time.perf_counter() - t
        self.ids = sorted(self.rc.ids)
        self.view = Timed(self.rc[self.ids], CALL_TIMEOUT_S)
        t = time.perf_counter()
        view = self.view
        view.execute(
            "import sys, numpy\nsys.dont_write_bytecode = True\nsys.path.insert(0, %r)\n"
            "from ipp_bintree import TreeCom" % BENCH_DIR
        )
        view.scatter("id", self.ids, flatten=True)
        view.execute("com = TreeCom(id)\ncom_url = com.url")
        urls = dict(zip(self.ids, view.pull("com_url")))
        view.push({"urls_": urls, "tree_": bintree(self.ids)})
        view.execute("com.connect(urls_, tree_)")

        def add(a, b):
            return a + b

        view.push({"add": add})
        view.execute("com.allreduce(add, 0)")  # every PUSH socket is connected after this
        self.wire_seconds = time.perf_counter() - t

    def measure(self, kind, iters):
        view = self.view
        if kind == "scalar":
            view.execute("x = float(id)")
            expected = float(sum(self.ids))
        elif kind == "mib":
            view.execute("x = numpy.full(%d, float(id))" % MIB_LENGTH)
            expected = float(sum(self.ids))
        else:
            raise ValueError("unknown kind %r" % kind)
        view.execute(
            "import time as _time\n"
            "com.allreduce(add, x)\n"
            "_t0 = _time.perf_counter()\n"
            "for _i in range(%d):\n"
            "    r = com.allreduce(add, x)\n"
            "inside_ms = (_time.perf_counter() - _t0) / %d * 1000\n" % (iters, iters)
        )
        inside = max(view.pull("inside_ms"))
        single = []
        for _ in range(max(3, iters // 4)):
            view.execute(
                "_t1 = _time.perf_counter()\n"
                "r = com.allreduce(add, x)\n"
                "single_ms = (_time.perf_counter() - _t1) * 1000\n"
            )
            single.append(max(view.pull("single_ms")))
        client = []
        for _ in range(iters):
            t = time.perf_counter()
            view.execute("r = com.allreduce(add, x)")
            client.append((time.perf_counter() - t) * 1000)
        view.execute("r_check = float(r) if numpy.ndim(r) == 0 else float(r[0])")
        checks = view.pull("r_check")
        if any(c != expected for c in checks):
            raise AssertionError("allreduce gave %r, expected %r" % (checks[:4], expected))
        return {"kind": kind, "inside": inside, "single": single, "client": client}

    def stop(self):
        import shutil

        t = time.perf_counter()
        try:
            self.rc.close()
            self.cluster.stop_cluster_sync()
        finally:
            shutil.rmtree(self.ipython_dir, ignore_errors=True)
        return time.perf_counter() - t


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=8)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--engine-timeout", type=int, default=600)
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args()

    bench = None
    try:
        bench = Bench(args.engines, args.engine_timeout)
        ready = {
            "engines": len(bench.ids),
            "start": bench.start_seconds,
            "wire": bench.wire_seconds,
        }
        if not args.serve:
            result = dict(ready)
            result["scalar"] = bench.measure("scalar", args.iters)
            result["mib"] = bench.measure("mib", args.iters)
            result["stop"] = bench.stop()
            bench = None
            print("RESULT " + json.dumps(result), flush=True)
            return
        print("READY " + json.dumps(ready), flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "quit":
                break
            if words[0] == "measure":
                try:
                    samples = bench.measure(words[1], int(words[2]))
                    print("SAMPLES " + json.dumps(samples), flush=True)
                except Exception as error:  # reported to the driver, which decides
                    print("ERROR " + json.dumps(repr(error)), flush=True)
            else:
                print("ERROR " + json.dumps("unknown command %r" % words[0]), flush=True)
        stop = bench.stop()
        bench = None
        print("STOPPED " + json.dumps({"stop": stop}), flush=True)
    finally:
        if bench is not None:
            bench.stop()


if __name__ == "__main__":
    main()
