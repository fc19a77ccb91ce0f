"""Benchmark of the compiled reward kernels (a script, not a test).

    PYTHONPATH=. python benchmarks/kernels.py [--rows 10000000] [--repeat 5] [--calls 100000]

Measures, in one run: rows/s of the fused ``rewards`` kernel, of ``sympy.lambdify`` (numpy) on
the same formula and of a hand-written numba ``prange`` loop (which gets numba's scalar libm calls;
the kernels use ``symreward.kernels.VECTOR_MATH``); cold compile (the first reward, and every
kernel), in-memory cache hit
and new-process disk cache hit times; and the latency of ``single``. The machine may be shared
and noisy, so the throughput timings are repeated in turn (each round times every variant once,
so all see the same background load), the best are compared (medians are printed too), and the
targets are ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
import sympy

from symreward.formula import NUMPY_FUNCTIONS, parse
from symreward.kernels import VECTOR_MATH, RewardKernels, compile_reward

ROOT = Path(__file__).resolve().parents[1]
OBS_DIM, ACT_DIM = 8, 2

FEATURES = {
    "theta": "atan2(obs[1], obs[0])",
    "speed": "sqrt(obs[3]**2 + obs[4]**2)",
    "effort": "act[0]**2 + act[1]**2",
    "height": "obs[2]",
    "tilt": "cos(obs[5])",
    "progress": "next_obs[6] - obs[6]",
}
TERMS = {
    "upright": "-1.0 * theta**2",
    "slow": "-0.1 * speed",
    "effort": "-0.001 * effort",
    "alive": "2 * tanh(height)",
    "fallen": "-5 * (height < 0.2)",
    "level": "exp(-tilt**2)",
    "forward": "1.5 * progress",
}

# A MuJoCo-style reward without transcendental functions, to show what fusion gains when numpy's
# SIMD math does not dominate (extra row, not a target).
ARITHMETIC_FEATURES = {
    "x_vel": "(next_obs[0] - obs[0]) / 0.05",
    "ctrl": "act[0]**2 + act[1]**2",
    "height": "obs[2]",
    "tilt": "obs[3]",
}
ARITHMETIC_TERMS = {
    "forward": "min(x_vel, 10)",
    "control": "-0.1 * ctrl",
    "healthy": "0.8 < height < 2.0",
    "posture": "-0.5 * abs(tilt)",
}


@numba.njit(parallel=True, error_model="numpy", fastmath=False)
def hand_written(obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """The same reward as a person would write it with numba: the practical speed limit."""
    n = obs.shape[0]
    out = np.empty(n)
    for i in numba.prange(n):
        theta = np.arctan2(obs[i, 1], obs[i, 0])
        speed = np.sqrt(obs[i, 3] * obs[i, 3] + obs[i, 4] * obs[i, 4])
        effort = act[i, 0] * act[i, 0] + act[i, 1] * act[i, 1]
        height = obs[i, 2]
        tilt = np.cos(obs[i, 5])
        progress = next_obs[i, 6] - obs[i, 6]
        fallen = 1.0 if height < 0.2 else 0.0
        out[i] = (-1.0 * theta * theta - 0.1 * speed - 0.001 * effort + 2.0 * np.tanh(height)
                  - 5.0 * fallen + np.exp(-tilt * tilt) + 1.5 * progress)
    return out


def reward_exprs(feature_texts: dict[str, str] = FEATURES, term_texts: dict[str, str] = TERMS
                 ) -> tuple[list[tuple[str, sympy.Expr]], list[tuple[str, sympy.Expr]]]:
    names: list[str] = []
    features = []
    for name, text in feature_texts.items():
        features.append((name, parse(text, names, allow_inputs=True)))
        names.append(name)
    return features, [(name, parse(text, names)) for name, text in term_texts.items()]


def timings(function: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def child(cache_dir: str) -> None:
    """Run in a new process: load the reward from the disk cache and report the time."""
    features, terms = reward_exprs()
    start = time.perf_counter()
    kernels = compile_reward(features, terms, cache_dir=cache_dir)
    dispatchers = kernels.dispatchers().values()
    seconds = time.perf_counter() - start
    print(json.dumps({
        "compile_reward_s": seconds,
        "cache_hits": sum(sum(d.stats.cache_hits.values()) for d in dispatchers),
        "cache_misses": sum(sum(d.stats.cache_misses.values()) for d in dispatchers),
    }))


def new_process(cache_dir: str) -> dict[str, float]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, "--child", cache_dir], check=True,
                            capture_output=True, text=True, env=environment)
    report = json.loads(result.stdout)
    report["process_s"] = time.perf_counter() - start
    return report


def lambdify_reward(features: list, terms: list) -> tuple[Callable, list[sympy.Symbol]]:
    """``sympy.lambdify`` on the reward with the features substituted: one numpy expression."""
    total = sympy.Add(*(expr for _, expr in terms))
    for name, expr in reversed(features):
        total = total.subs(sympy.Symbol(name, real=True), expr)
    symbols = sorted(total.free_symbols, key=lambda s: s.name)
    return sympy.lambdify(symbols, total, modules=[NUMPY_FUNCTIONS, "numpy"]), symbols


def column(symbol: sympy.Symbol, arrays: dict[str, np.ndarray]) -> np.ndarray:
    array, index = symbol.name.rstrip("]").split("[")
    return arrays[array][:, int(index)]


def single_latency(kernels: RewardKernels, rows: tuple[np.ndarray, ...], calls: int,
                   repeat: int) -> tuple[list[float], list[float]]:
    obs, act, next_obs = (np.ascontiguousarray(row) for row in rows)
    single, raw, info = kernels.single, kernels.single_raw, np.empty(0)

    def wrapped() -> None:
        for _ in range(calls):
            single(obs, act, next_obs)

    def direct() -> None:
        for _ in range(calls):
            raw(obs, act, next_obs, info)

    wrapped_s = [t / calls * 1e6 for t in timings(wrapped, repeat)]
    direct_s = [t / calls * 1e6 for t in timings(direct, repeat)]
    return wrapped_s, direct_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="symreward-bench-") as cache_dir:
        benchmark(args, cache_dir)


def benchmark(args: argparse.Namespace, cache_dir: str) -> None:
    load_before = os.getloadavg()
    features, terms = reward_exprs()
    rng = np.random.default_rng(0)
    n = args.rows
    arrays = {"obs": rng.normal(size=(n, OBS_DIM)), "act": rng.normal(size=(n, ACT_DIM)),
              "next_obs": rng.normal(size=(n, OBS_DIM))}
    obs, act, next_obs = arrays["obs"], arrays["act"], arrays["next_obs"]
    start = time.perf_counter()
    kernels = compile_reward(features, terms, cache_dir=cache_dir)
    kernels.rewards(obs, act, next_obs)
    cold_first = time.perf_counter() - start
    start = time.perf_counter()
    every = kernels.dispatchers()
    cold = cold_first + time.perf_counter() - start
    warm = min(timings(lambda: compile_reward(features, terms, cache_dir=cache_dir), 1000))
    hits = [new_process(cache_dir) for _ in range(args.repeat)]

    function, symbols = lambdify_reward(features, terms)
    columns = [column(s, arrays) for s in symbols]

    fused_out = kernels.rewards(obs, act, next_obs)
    hand_out = hand_written(obs, act, next_obs)
    with np.errstate(all="ignore"):
        numpy_out = function(*columns)
    # The terms are O(1) and partly cancel; lambdify adds them in another order, hence atol.
    np.testing.assert_allclose(fused_out, numpy_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fused_out, hand_out, rtol=1e-12, atol=1e-12)

    arithmetic = compile_reward(*reward_exprs(ARITHMETIC_FEATURES, ARITHMETIC_TERMS),
                                cache_dir=cache_dir)
    plain_function, plain_symbols = lambdify_reward(
        *reward_exprs(ARITHMETIC_FEATURES, ARITHMETIC_TERMS))
    plain_columns = [column(s, arrays) for s in plain_symbols]
    np.testing.assert_allclose(arithmetic.rewards(obs, act, next_obs),
                               plain_function(*plain_columns), rtol=1e-12, atol=1e-12)

    threads = numba.get_num_threads()

    def one_thread() -> None:
        numba.set_num_threads(1)
        try:
            kernels.rewards(obs, act, next_obs)
        finally:
            numba.set_num_threads(threads)

    runs = {
        "fused": lambda: kernels.rewards(obs, act, next_obs),
        "hand": lambda: hand_written(obs, act, next_obs),
        "lambdified": lambda: function(*columns),
        "one_thread": one_thread,  # whether the second core was there for us: the machine is shared
        "plain_fused": lambda: arithmetic.rewards(obs, act, next_obs),
        "plain_numpy": lambda: plain_function(*plain_columns),
    }
    measured: dict[str, list[float]] = {name: [] for name in runs}
    with np.errstate(all="ignore"):
        for _ in range(args.repeat):  # interleaved, so all see the same background load
            for name, run in runs.items():
                measured[name] += timings(run, 1)
    fused, hand, lambdified = measured["fused"], measured["hand"], measured["lambdified"]
    plain_fused, plain_numpy = measured["plain_fused"], measured["plain_numpy"]
    scaling = min(measured["one_thread"]) / min(fused)
    single_us, raw_us = single_latency(kernels, (obs[0], act[0], next_obs[0]), args.calls,
                                       args.repeat)

    def rate(times: list[float]) -> str:
        best, median = n / min(times) / 1e6, n / statistics.median(times) / 1e6
        return f"{best:8.1f} M rows/s (median {median:.1f})"

    hit_compile = [h["compile_reward_s"] for h in hits]
    hit_process = [h["process_s"] for h in hits]
    vs_numpy = min(lambdified) / min(fused)
    vs_hand = min(hand) / min(fused)
    rows = [
        ("fused kernel (rewards)", rate(fused), ""),
        ("sympy.lambdify numpy", rate(lambdified), ""),
        ("hand-written numba prange", rate(hand), ""),
        ("fused vs lambdify", f"{vs_numpy:8.1f}x", _target(vs_numpy >= 5, ">= 5x")),
        ("fused vs hand-written", f"{vs_hand:8.2f}x", _target(vs_hand >= 0.9, ">= 0.9x")),
        (f"fused, {threads} threads vs 1", f"{scaling:8.2f}x", ""),
        ("arithmetic-only reward: fused", rate(plain_fused), ""),
        ("arithmetic-only reward: lambdify", rate(plain_numpy), ""),
        ("arithmetic-only: fused vs lambdify", f"{min(plain_numpy) / min(plain_fused):8.1f}x",
         ""),
        ("cold: compile_reward and the first rewards()", f"{cold_first:8.2f} s", ""),
        (f"cold: every kernel ({len(every)}, fresh cache dir)", f"{cold:8.2f} s", ""),
        ("warm, in-process memory cache", f"{warm * 1e6:8.1f} µs", ""),
        ("new process: compile_reward, every kernel loaded", f"{min(hit_compile):8.3f} s "
         f"(median {statistics.median(hit_compile):.3f})",
         _target(min(hit_compile) < 0.5, "< 0.5 s")),
        ("new process: whole process", f"{min(hit_process):8.2f} s "
         f"(median {statistics.median(hit_process):.2f}; imports and startup included)", ""),
        ("new process: numba cache", f"{hits[0]['cache_hits']} hits, "
         f"{hits[0]['cache_misses']} misses", ""),
        ("single() per call", f"{min(single_us):8.2f} µs (median "
         f"{statistics.median(single_us):.2f})", _target(min(single_us) < 3, "< 3 µs")),
        ("single_raw() per call", f"{min(raw_us):8.2f} µs (median "
         f"{statistics.median(raw_us):.2f})", ""),
    ]
    print(f"symreward kernel benchmark, {datetime.date.today()}, os.cpu_count()={os.cpu_count()}, "
          f"numba {numba.__version__} ({numba.threading_layer()} threads, "
          f"NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}), numpy {np.__version__}")
    print(f"{n:,} transitions, obs_dim={OBS_DIM}, act_dim={ACT_DIM}, {len(FEATURES)} features, "
          f"{len(TERMS)} terms; best of {args.repeat} (median in brackets); "
          f"single() over {args.calls:,} calls")
    print(f"kernel math: {VECTOR_MATH.name}, {VECTOR_MATH.width} doubles per call "
          f"({', '.join(VECTOR_MATH.functions) or 'scalar libm'})")
    print("command: PYTHONPATH=. python benchmarks/kernels.py " + " ".join(sys.argv[1:]))
    print("load average before / after: " + " / ".join(
        ", ".join(f"{x:.2f}" for x in load) for load in (load_before, os.getloadavg())))
    width = max(len(name) for name, _, _ in rows)
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value}  {target}".rstrip())


def _target(met: bool, target: str) -> str:
    return f"target {target}: {'met' if met else 'MISSED'}"


if __name__ == "__main__":
    main()
