"""The Ray equivalents of measurements 1-5 of turbolift-bench (run by `--ray`).

Modes: `suite SEQ PAR INFLIGHT BLOB_BYTES BLOB_CALLS`, `launch`, `cpu CALLS MS NUM_CPUS`.
Prints one JSON object per line, prefixed with `BENCH `, like bench/fixture.
"""

import json
import sys
import time

STARTED = time.perf_counter()

import ray  # noqa: E402


def out(**kv):
    print("BENCH " + json.dumps(kv), flush=True)


@ray.remote
def echo(x):
    return x + 1


@ray.remote
def blob(data):
    return data


def work(iters):
    x = 0x9E3779B97F4A7C15
    m = (1 << 64) - 1
    for _ in range(iters):
        x ^= (x << 13) & m
        x ^= x >> 7
        x ^= (x << 17) & m
    return x


@ray.remote
def burn(iters):
    return work(iters)


def pct(sorted_samples, p):
    return sorted_samples[min(int(len(sorted_samples) * p), len(sorted_samples) - 1)]


def main():
    mode = sys.argv[1]
    if mode == "launch":
        ray.init(include_dashboard=False, log_to_driver=False)
        assert ray.get(echo.remote(1)) == 2
        out(kind="launch", main_to_result_us=(time.perf_counter() - STARTED) * 1e6)
    elif mode == "suite":
        seq, par, inflight, blob_bytes, blob_calls = map(int, sys.argv[2:7])
        ray.init(include_dashboard=False, log_to_driver=False)
        for i in range(min(seq, 200)):
            ray.get(echo.remote(i))
        samples = []
        t = time.perf_counter()
        for i in range(seq):
            c = time.perf_counter()
            assert ray.get(echo.remote(i)) == i + 1
            samples.append(time.perf_counter() - c)
        total = time.perf_counter() - t
        samples.sort()
        out(kind="seq", p50_us=pct(samples, 0.5) * 1e6, p99_us=pct(samples, 0.99) * 1e6,
            calls_per_s=seq / total)
        t = time.perf_counter()
        pending = [echo.remote(i) for i in range(inflight)]
        sent = inflight
        done = 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            ray.get(ready)
            done += len(ready)
            while sent < par and len(pending) < inflight:
                pending.append(echo.remote(sent))
                sent += 1
        out(kind="par", calls_per_s=done / (time.perf_counter() - t))
        data = bytes(i % 251 for i in range(blob_bytes))
        assert ray.get(blob.remote(data)) == data
        times = []
        for _ in range(blob_calls):
            t = time.perf_counter()
            back = ray.get(blob.remote(data))
            times.append(time.perf_counter() - t)
            assert len(back) == len(data)
        times.sort()
        out(kind="blob", mb_per_s=blob_bytes / 1e6 / times[len(times) // 2])
    elif mode == "cpu":
        calls, ms, cpus = map(int, sys.argv[2:5])
        probe = 200_000
        best = min(timed(lambda: work(probe)) for _ in range(3))
        iters = int(probe * ms / 1e3 / best)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        ray.get([burn.remote(1) for _ in range(cpus)])
        t = time.perf_counter()
        ray.get([burn.remote(iters) for _ in range(calls)])
        out(kind="cpu", wall_ms=(time.perf_counter() - t) * 1e3, single_ms=best * iters / probe * 1e3)
    else:
        sys.exit(f"unknown mode {mode}")


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
