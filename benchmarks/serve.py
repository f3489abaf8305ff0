"""``stream-gru serve`` measured from the outside, beside the local pool it serves.

    python benchmarks/serve.py                 # the full run, a few minutes on 2 cores
    python benchmarks/serve.py --quick         # seconds (tests/tools/test_bench_serve.py)
    python benchmarks/serve.py --model model.onnx --out /tmp/serve

1. Requests: single-step requests through ``tritonclient.http`` (binary tensors, the
   client's default) at concurrency 1, 16 and 64 (one thread and one stream per
   concurrent client, each sending its next request when the last is answered), for the
   server as it ships (``--max-delay-ms 2``) and with ``--max-batch 1`` (every sample
   its own tick, no waiting). Requests/s and the client's p50/p99 latency; from the
   server's metrics, its time per request, split into the wait for a tick, the tick,
   and the rest (HTTP, parsing, checks, encoding): the per-request overhead, beside
   Triton's published figure of about 80 us for a tiny model at concurrency 1.
2. A gateway: one WebSocket feeding ``--streams`` streams (2,000), every stream one
   sample per period, at rising rates (10 Hz up). Sample-to-result latency p50/p99 (from
   the frame's send to the sample's reply) and the stream-steps/s delivered, against the
   bound of ``max_delay`` plus two ticks (the server's own time per frame, from its
   metrics, and the client's p99, which adds the WebSocket's transport) and against the
   local
   ``StreamPool``'s rate on the same streams in the same run. A rate is sustained while
   every reply arrives and p99 stays under a period.

Model: the fleet-size GRU (``gru-h64`` of ``make bench``: I=8, H=64, L=1, O=4, seeded
random weights; needs the train extra), or ``--model``. The server runs in its own
process, the clients in this one: on a 2-core machine they share the cores, so the
figures are what one machine serving itself can do. A benchmark reports, it does not
judge: the exit status is 0 whatever it measures. Writes serve.json, serve.txt and
serve.png (latency against offered load) into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import stream_gru as sg
from stream_gru.tools.bench.report import save_results
from stream_gru.tools.bench.system import machine, versions

TRITON_OVERHEAD_US = 80  # Triton's published server overhead, a tiny model, concurrency 1


@dataclass(frozen=True)
class Plan:
    concurrency: tuple[int, ...] = (1, 16, 64)
    request_seconds: float = 3.0
    streams: int = 2000
    rates_hz: tuple[float, ...] = (10, 20, 40, 80, 160, 320, 640)  # binary frames
    json_rates_hz: tuple[float, ...] = (10, 20, 40)
    level_seconds: float = 3.0
    local_ticks: int = 200


QUICK = Plan(concurrency=(1, 4), request_seconds=0.3, streams=100, rates_hz=(10, 40),
             json_rates_hz=(10,), level_seconds=0.4, local_ticks=20)  # fmt: skip


class Server:
    """``stream-gru serve`` in its own process, on a free port."""

    def __init__(self, model: Path, *args: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "stream_gru", "serve", str(model), "--port",
                   str(self.port), "--log-level", "warning", *args]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the server did not start")

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://{self.url}/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def server_split(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per request (us): the server's time, the wait for a tick, the tick, the rest."""
    requests = _delta(after, before, 'stream_gru_request_duration_seconds_count{protocol="http"}')
    samples = _delta(after, before, "stream_gru_queue_duration_seconds_count")
    ticks = _delta(after, before, "stream_gru_tick_duration_seconds_count")
    if not requests or not samples or not ticks:
        return {}
    total = _delta(after, before, 'stream_gru_request_duration_seconds_sum{protocol="http"}')
    wait = _delta(after, before, "stream_gru_queue_duration_seconds_sum") / samples
    tick = _delta(after, before, "stream_gru_tick_duration_seconds_sum") / ticks
    server = total / requests
    return {
        "server_us": server * 1e6, "queue_us": wait * 1e6, "tick_us": tick * 1e6,
        "overhead_us": (server - wait - tick) * 1e6, "tick_size": samples / ticks,
    }  # fmt: skip


def _client(url: str, name: str, spec: sg.ModelSpec, key: str, x: np.ndarray,
            stop: threading.Event, latencies: list[float]) -> None:  # fmt: skip
    """One tritonclient client: its stream's next request as soon as the last is answered."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    tensor = httpclient.InferInput(spec.io.input, [1, spec.input_size], "FP32")
    tensor.set_data_from_numpy(x)
    client.infer(name, [tensor], sequence_id=key, sequence_start=True)
    while not stop.is_set():
        t0 = time.perf_counter()
        client.infer(name, [tensor], sequence_id=key)
        latencies.append(time.perf_counter() - t0)
    client.close()


def measure_requests(model: Path, spec: sg.ModelSpec, plan: Plan) -> list[dict[str, Any]]:
    rows = []
    for label, args in (("batching (2 ms)", ()), ("--max-batch 1", ("--max-batch", "1"))):
        server = Server(model, *args)
        try:
            for concurrency in plan.concurrency:
                latencies: list[list[float]] = [[] for _ in range(concurrency)]
                stop = threading.Event()
                x = np.random.default_rng(concurrency).standard_normal((1, spec.input_size))
                threads = [
                    threading.Thread(target=_client, args=(
                        server.url, model.stem, spec, f"c{concurrency}-{i}",
                        x.astype(np.float32), stop, latencies[i],
                    ))
                    for i in range(concurrency)
                ]  # fmt: skip
                before = server.metrics()
                start = time.perf_counter()
                for t in threads:
                    t.start()
                time.sleep(plan.request_seconds)
                stop.set()
                for t in threads:
                    t.join(60)
                elapsed = time.perf_counter() - start
                after = server.metrics()
                all_lat = np.concatenate([np.array(v) for v in latencies]) * 1e6
                rows.append({
                    "server": label, "concurrency": concurrency,
                    "requests_per_s": len(all_lat) / elapsed,
                    "p50_us": float(np.percentile(all_lat, 50)),
                    "p99_us": float(np.percentile(all_lat, 99)),
                    **server_split(before, after),
                })  # fmt: skip
        finally:
            server.stop()
    return rows


async def _gateway_level(url: str, keys: list[str], rate: float, seconds: float,
                         input_size: int, binary: bool) -> dict[str, Any]:  # fmt: skip
    """One offered load: a frame of every stream's sample each period, for ``seconds``."""
    from websockets.asyncio.client import connect

    from stream_gru.serve.gateway import decode_reply, encode_request

    rng = np.random.default_rng(int(rate))
    period = 1.0 / rate
    frames = max(1, int(seconds * rate))
    sent_at: list[float] = []
    received: list[tuple[float, Any]] = []
    expected = frames if binary else frames * len(keys)  # reply frames
    async with connect(f"ws://{url}/v1/stream", max_size=None) as ws:

        async def receive() -> None:
            while len(received) < expected:
                data = await ws.recv()
                received.append((time.perf_counter(), data))  # when it came, not when asked

        payloads: list[Any] = []  # made before the clock starts: the client only sends
        for _ in range(frames):
            xs = rng.standard_normal((len(keys), input_size)).astype(np.float32)
            if binary:
                payloads.append(encode_request(keys, xs))
            else:
                payloads.append(json.dumps({"samples": dict(zip(keys, xs.round(4).tolist(),
                                                                strict=True))}))  # fmt: skip
        receiver = asyncio.ensure_future(receive())
        start = time.perf_counter()
        for f, payload in enumerate(payloads):
            await asyncio.sleep(max(0.0, start + f * period - time.perf_counter()))
            sent_at.append(time.perf_counter())
            await ws.send(payload)
        try:
            await asyncio.wait_for(receiver, timeout=max(10.0, 4 * seconds))
        except asyncio.TimeoutError:
            receiver.cancel()
        elapsed = time.perf_counter() - start
    latencies: list[float] = []
    if binary:
        for i, (t, data) in enumerate(received):
            answered = sum(s == "ok" for s in decode_reply(data).status)
            latencies += [t - sent_at[i]] * answered
    else:
        counts: dict[str, int] = {}
        for t, text in received:
            frame = json.loads(text)
            if "step" in frame:
                i = counts.get(frame["key"], 0)
                counts[frame["key"]] = i + 1
                latencies.append(t - sent_at[i])
    lat = np.array(latencies) * 1e3
    return {
        "format": "binary" if binary else "json", "rate_hz": rate,
        "offered_per_s": rate * len(keys), "delivered_per_s": len(lat) / elapsed,
        "answered": len(lat), "expected": frames * len(keys),
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
    }  # fmt: skip


def _run(coroutine: Any) -> Any:
    """On uvloop where installed (the server's loop too), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def measure_gateway(model: Path, spec: sg.ModelSpec, plan: Plan) -> dict[str, Any]:
    keys = [f"gw-{i}" for i in range(plan.streams)]
    server = Server(model, "--max-queue", str(max(65_536, 8 * plan.streams)))
    levels = []
    try:
        for binary, rates in ((False, plan.json_rates_hz), (True, plan.rates_hz)):
            for rate in rates:
                before = server.metrics()
                level = _run(_gateway_level(server.url, keys, rate, plan.level_seconds,
                                            spec.input_size, binary))  # fmt: skip
                after = server.metrics()
                ticks = _delta(after, before, "stream_gru_tick_duration_seconds_count")
                tick = _delta(after, before, "stream_gru_tick_duration_seconds_sum") / max(ticks, 1)
                level["tick_ms"] = tick * 1e3
                frames = _delta(
                    after, before, 'stream_gru_request_duration_seconds_count{protocol="websocket"}'
                )
                level["server_ms"] = 1e3 * _delta(
                    after, before, 'stream_gru_request_duration_seconds_sum{protocol="websocket"}'
                ) / max(frames, 1)  # fmt: skip
                level["bound_ms"] = (0.002 + 2 * tick) * 1e3  # max_delay + two ticks
                level["sustained"] = bool(
                    level["answered"] == level["expected"] and level["p99_ms"] < 1e3 / rate
                )
                levels.append(level)
                if not level["sustained"]:
                    break  # past what this machine sustains: higher rates only queue up
    finally:
        server.stop()
    pool = sg.load(model, provider="cpu").pool()
    pool.open_many(keys)
    xs = np.random.default_rng(0).standard_normal((plan.streams, spec.input_size))
    xs = xs.astype(np.float32)
    pool.step_batch(keys, xs)
    start = time.perf_counter()
    for _ in range(plan.local_ticks):
        pool.step_batch(keys, xs)
    local = plan.local_ticks * plan.streams / (time.perf_counter() - start)
    return {"streams": plan.streams, "levels": levels, "local_steps_per_s": local}


def report(result: dict[str, Any]) -> str:
    lines = [
        f"stream-gru serve, {result['date']}, {result['machine']['cpu']} "
        f"({result['machine']['cores']} cores); server and clients on this machine",
        f"  model {result['model']}; python {result['versions']['python']}, "
        f"onnxruntime {result['versions']['onnxruntime']}",
        "",
        "single-step requests, tritonclient.http (binary tensors)",
        "  server            clients   req/s    p50 us   p99 us  | server us  queue  tick  "
        "other  tick size",
    ]
    for r in result["requests"]:
        lines.append(
            f"  {r['server']:<17} {r['concurrency']:>7} {r['requests_per_s']:>7.0f} "
            f"{r['p50_us']:>9.0f} {r['p99_us']:>8.0f}  | {r.get('server_us', 0):>9.0f} "
            f"{r.get('queue_us', 0):>6.0f} {r.get('tick_us', 0):>5.0f} "
            f"{r.get('overhead_us', 0):>6.0f} {r.get('tick_size', 0):>10.1f}"
        )
    one = [r for r in result["requests"] if r["concurrency"] == 1 and "overhead_us" in r]
    if one:
        overhead = min(r["overhead_us"] for r in one)
        lines.append(f"  per-request overhead at concurrency 1 (server time less queue and "
                     f"tick): {overhead:.0f} us; Triton publishes about "
                     f"{TRITON_OVERHEAD_US} us")  # fmt: skip
    g = result["gateway"]
    lines += ["", f"a gateway over one WebSocket, {g['streams']:,} streams (json: one reply "
              f"frame per sample; binary: one per frame)",
              "  frames  rate Hz   offered/s  delivered/s   p50 ms   p99 ms  server ms  tick ms  "
              "bound ms  sustained"]  # fmt: skip
    for lv in g["levels"]:
        lines.append(
            f"  {lv['format']:<7} {lv['rate_hz']:>7.0f} {lv['offered_per_s']:>11,.0f} "
            f"{lv['delivered_per_s']:>12,.0f} {lv['p50_ms']:>8.1f} {lv['p99_ms']:>8.1f} "
            f"{lv['server_ms']:>10.1f} {lv['tick_ms']:>8.2f} {lv['bound_ms']:>9.2f}  "
            f"{'yes' if lv['sustained'] else 'no'}"
        )
    for fmt in ("json", "binary"):
        levels = [lv for lv in g["levels"] if lv["format"] == fmt]
        best = max((lv["delivered_per_s"] for lv in levels if lv["sustained"]), default=0.0)
        first = levels[0]
        server = "within" if first["server_ms"] <= first["bound_ms"] else "NOT within"
        client = "within" if first["p99_ms"] <= first["bound_ms"] else "NOT within"
        lines.append(
            f"  {fmt}: sustained {best:,.0f} stream-steps/s ({best / g['local_steps_per_s']:.0%} "
            f"of the local StreamPool's {g['local_steps_per_s']:,.0f}/s on the same streams); "
            f"at {first['rate_hz']:.0f} Hz, against max_delay + two ticks = "
            f"{first['bound_ms']:.1f} ms: the server's mean {first['server_ms']:.1f} ms {server}, "
            f"the client's p99 {first['p99_ms']:.1f} ms {client}"
        )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for fmt, marker in (("json", "o"), ("binary", "s")):
        levels = [lv for lv in result["gateway"]["levels"] if lv["format"] == fmt]
        offered = [lv["offered_per_s"] for lv in levels]
        left.plot(offered, [lv["p50_ms"] for lv in levels], marker + "-", label=f"{fmt} p50")
        left.plot(offered, [lv["p99_ms"] for lv in levels], marker + "--", label=f"{fmt} p99")
    levels = [lv for lv in result["gateway"]["levels"] if lv["format"] == "binary"]
    left.plot([lv["offered_per_s"] for lv in levels], [lv["bound_ms"] for lv in levels], "k:",
              label="max_delay + 2 ticks")  # fmt: skip
    left.set(xscale="log", yscale="log", xlabel="offered stream-steps/s (one WebSocket)",
             ylabel="sample to result, ms",
             title=f"gateway, {result['gateway']['streams']:,} streams")  # fmt: skip
    left.legend()
    for label in dict.fromkeys(r["server"] for r in result["requests"]):
        rows = [r for r in result["requests"] if r["server"] == label]
        right.plot([r["concurrency"] for r in rows], [r["requests_per_s"] for r in rows], "o-",
                   label=label)  # fmt: skip
    right.set(xscale="log", xlabel="concurrent tritonclient clients", ylabel="requests/s",
              title="single-step requests")  # fmt: skip
    right.legend()
    fig.suptitle(f"stream-gru serve, {result['date']}, {result['machine']['cores']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds")
    parser.add_argument("--model", type=Path, help="a model (default: the built-in gru-h64)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from stream_gru.tools.bench.run import make_builtin_models

            model = next(c.path for c in make_builtin_models(Path(tmp)) if c.name == "gru-h64")
        spec = sg.load(model, provider="cpu").spec
        result = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(), "versions": versions(), "model": model.stem,
            "plan": plan.__dict__, "requests": measure_requests(model, spec, plan),
            "gateway": measure_gateway(model, spec, plan),
        }  # fmt: skip
    text = report(result)
    print(text)
    files = save_results(args.out, "serve", result, text, plot)
    if len(files) < 3:
        print("(no plot: matplotlib is not installed)")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
