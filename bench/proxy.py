"""Benchmark of ``entropy-sentinel proxy``: the same chat requests sent client -> proxy ->
llama-server and client -> llama-server, alternately, in one run.

    .venv/bin/python bench/proxy.py [--requests 32] [--rounds 3] [--concurrency 8] \\
        [--max-tokens 16] [--stream] [--estimator EST.skops]

It starts a local llama-server (tests/llama_server/build.sh builds it) with the demo's SmolLM2
GGUF and the proxy as a user runs it (the console script). Each round sends every request
both ways, at the same concurrency, in alternating order (direct first in even rounds), so
that drift in machine load hits both. Requests are greedy, without log-probs (the common
client: the proxy asks for the top 20 and strips them) and without the prompt cache.

Reported: the throughput ratio (proxied / direct responses per second, over the whole run,
and the median of the rounds' ratios, which drift in load between rounds moves less), the
extra p50 and p95 latency (ms and % of the direct one), and the proxy's CPU per response (its
process's user + system time, scoring included, over the responses it relayed). Targets at
concurrency 8: a ratio >= 0.95 and <= 5 % extra p50 latency. On a small machine the proxy
competes with the server for the same cores; the CPU per response says what it costs alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from llama_server.server import SERVED_NAME, LlamaServer, missing_reason, smollm2_gguf  # noqa: E402
from proxy_server import ProxyServer  # noqa: E402

from entropy_sentinel.data.synthetic import generate_items  # noqa: E402


def requests(n: int, max_tokens: int, stream: bool) -> list[dict]:
    items = generate_items(max(1, n // 5 + 1), seed=5)[:n]
    return [
        {
            "model": SERVED_NAME,
            "messages": [{"role": "user", "content": item["question"]}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "seed": i,
            "stream": stream,
            "cache_prompt": False,
        }
        for i, item in enumerate(items)
    ]


async def phase(url: str, bodies: list[dict], concurrency: int) -> tuple[float, list[float]]:
    """Wall seconds to send all ``bodies`` at ``concurrency``, and each request's latency."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def one(body: dict) -> float:
            async with gate:
                began = time.perf_counter()
                reply = await client.post("/v1/chat/completions", json=body)
                reply.raise_for_status()
                return time.perf_counter() - began

        began = time.perf_counter()
        latencies = await asyncio.gather(*map(one, bodies))
        return time.perf_counter() - began, list(latencies)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32, help="requests per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--slots", type=int, default=8, help="llama-server's parallel slots")
    parser.add_argument("--threads", type=int, default=2, help="llama-server's threads")
    parser.add_argument("--stream", action="store_true", help="streamed (SSE) requests")
    parser.add_argument("--estimator", type=Path, help="default: the tests' small estimator")
    args = parser.parse_args()
    if missing_reason():
        print(missing_reason(), file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    estimator = args.estimator
    if estimator is None:
        from test_cli import fit_estimator  # k=20, raw log-probs, as llama-server serves

        estimator = fit_estimator(work / "estimator.skops")
    bodies = requests(args.requests, args.max_tokens, args.stream)
    with (
        LlamaServer(smollm2_gguf(), slots=args.slots, threads=args.threads) as server,
        ProxyServer(server.base_url.removesuffix("/v1"), estimator, work / "features") as proxy,
    ):
        paths = {"direct": server.base_url.removesuffix("/v1"), "proxy": proxy.url}
        for url in paths.values():  # warm-up, not counted
            asyncio.run(phase(url, bodies[: args.concurrency], args.concurrency))
        cpu_before = proxy.cpu_seconds()
        wall = {"direct": 0.0, "proxy": 0.0}
        latency = {"direct": [], "proxy": []}
        rounds = []  # per round: direct wall / proxied wall (the throughput ratio)
        for r in range(args.rounds):
            order = ("direct", "proxy") if r % 2 == 0 else ("proxy", "direct")
            took = {}
            for path in order:
                took[path], latencies = asyncio.run(phase(paths[path], bodies, args.concurrency))
                wall[path] += took[path]
                latency[path] += latencies
            rounds.append(took["direct"] / took["proxy"])
            done = f"direct {wall['direct']:.1f} s, proxy {wall['proxy']:.1f} s"
            print(f"round {r + 1}: {done}", flush=True)
        deadline = time.monotonic() + 60  # let the scorer finish: its CPU is the proxy's too
        while time.monotonic() < deadline:
            if httpx.get(f"{proxy.url}/healthz").json()["pending"] == 0:
                break
            time.sleep(0.2)
        time.sleep(0.5)
        cpu = proxy.cpu_seconds() - cpu_before
    relayed = len(latency["proxy"])
    throughput = {path: len(latency[path]) / wall[path] for path in wall}
    p50 = {path: statistics.median(latency[path]) for path in wall}
    p95 = {path: percentile(latency[path], 95) for path in wall}
    result = {
        "requests": relayed,
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
        "stream": args.stream,
        "throughput_direct_rps": throughput["direct"],
        "throughput_proxy_rps": throughput["proxy"],
        "throughput_ratio": throughput["proxy"] / throughput["direct"],
        "throughput_ratio_median_round": statistics.median(rounds),
        "throughput_ratio_rounds": rounds,
        "p50_direct_ms": 1e3 * p50["direct"],
        "p50_extra_ms": 1e3 * (p50["proxy"] - p50["direct"]),
        "p50_extra_pct": 100 * (p50["proxy"] / p50["direct"] - 1),
        "p95_direct_ms": 1e3 * p95["direct"],
        "p95_extra_ms": 1e3 * (p95["proxy"] - p95["direct"]),
        "p95_extra_pct": 100 * (p95["proxy"] / p95["direct"] - 1),
        "proxy_cpu_ms_per_response": 1e3 * cpu / relayed,
    }
    print(json.dumps(result, indent=2))
    ok = result["throughput_ratio"] >= 0.95 and result["p50_extra_pct"] <= 5
    print(
        f"throughput ratio {result['throughput_ratio']:.3f} (target >= 0.95), extra p50 "
        f"{result['p50_extra_pct']:+.1f} % (target <= 5 %), extra p95 "
        f"{result['p95_extra_pct']:+.1f} %, proxy CPU {result['proxy_cpu_ms_per_response']:.2f} "
        f"ms/response: {'met' if ok else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
