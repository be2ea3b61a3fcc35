"""The Python side of mp-bench: the same workloads on multiprocessing.

Run as `python3 python_bench.py METHOD WORKLOAD REPEATS [ARG]`; prints one JSON object:
{"seconds": [one wall time per repeat], "extra": {...}}. Pools are started before timing.
"""
import json
import multiprocessing as mp
import sys
import time


def cube(x):
    return x * x * x


def identity(x):
    return x


def nothing():
    pass


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def uss_kib(pid):
    """Private_Clean + Private_Dirty: the memory only this process holds."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def producer(queue, count):
    for i in range(count):
        queue.put(i)
    queue.put(None)


def echo(conn):
    while True:
        message = conn.recv()
        if message is None:
            return
        conn.send(message)


def timed(repeats, run):
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def main():
    method, workload, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    arg = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    ctx = mp.get_context(method)
    extra = {}
    if workload == "start_join":
        def run():
            p = ctx.Process(target=nothing)
            p.start()
            p.join()
        seconds = timed(repeats, run)
    elif workload in ("map", "imap1", "apply", "bytes"):
        with ctx.Pool(2) as pool:
            pool.map(cube, range(100))  # warm up: workers started and imported
            if workload == "map":
                seconds = timed(repeats, lambda: pool.map(cube, range(arg)))
            elif workload == "imap1":
                seconds = timed(repeats, lambda: sum(pool.imap(cube, range(arg), 1)))
            elif workload == "apply":
                seconds = timed(repeats, lambda: [pool.apply(cube, (i,)) for i in range(arg)])
            else:
                data = bytes(arg)
                seconds = timed(repeats, lambda: pool.apply(identity, (data,)))
    elif workload == "queue":
        def run():
            queue = ctx.Queue()
            p = ctx.Process(target=producer, args=(queue, arg))
            p.start()
            while queue.get() is not None:
                pass
            p.join()
        seconds = timed(repeats, run)
    elif workload == "pipe":
        def run():
            here, there = ctx.Pipe()
            p = ctx.Process(target=echo, args=(there,))
            p.start()
            here.send(0)
            here.recv()  # the child is up
            start = time.perf_counter()
            for i in range(arg):
                here.send(i)
                here.recv()
            elapsed = time.perf_counter() - start
            here.send(None)
            p.join()
            return elapsed
        seconds = [run() for _ in range(repeats)]
    elif workload == "rss":
        with ctx.Pool(2) as pool:
            pool.map(cube, range(100))
            pids = [worker.pid for worker in pool._pool]
            time.sleep(0.2)
            extra["rss_kib"] = [rss_kib(pid) for pid in pids]
            extra["uss_kib"] = [uss_kib(pid) for pid in pids]
        seconds = [0.0]
    else:
        raise SystemExit(f"unknown workload {workload}")
    print(json.dumps({"seconds": seconds, "extra": extra}))


if __name__ == "__main__":
    main()
