"""Using the merged model from outside the run: does it recommend what the run measured,
and how fast does ``silorec serve`` answer?

For a finished run (``silorec run scenarios/amazon.toml --out RUN``) this script

1. exports the run's default model (the merge with the best validation Recall@10) and
   θ0 with ``silorec export``, and loads them back as a user would;
2. on the unseen domain (Pantry on amazon), writes its catalogue with ``silorec data
   items``, recommends the top 10 for every evaluated test user with
   ``LoadedModel.recommend_batch`` and compares Recall@10 and NDCG@10 with the run's
   report (they must agree: same protocol, same users);
3. starts ``silorec serve`` on 127.0.0.1 over that catalogue and measures, with a real
   HTTP client, single requests one after another (recommendations per second, p50 /
   p95 latency), single requests from several client threads, and batch requests.

Figures are printed as a Markdown table (``--out`` also writes it). Run it where the
domain's data is (it prepares the unseen domain as its node would).

    SILOREC_AMAZON_DIR=../shared/datasets/amazon-mergerec \\
        python benchmarks/bench_serve.py RUN --requests 1000
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from silorec.evaluation.protocol import evaluation_users
from silorec.results import load_run
from silorec.scenario import Scenario
from silorec.serving import default_label, export_model, load
from silorec.serving.catalogue import domain_catalogue


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_check(run_dir: Path, export_dir: Path, domain_name: str, scenario: Scenario):  # noqa: ANN201
    """Recall@10 / NDCG@10 from recommend vs the run's report, for each exported model."""
    catalogue, domain = domain_catalogue(scenario, domain_name)
    settings = scenario.evaluation
    users = evaluation_users(domain, settings.max_users, settings.users_seed)
    cases = [domain.eval_case(int(u), "test") for u in users]
    histories = [[domain.items.ids[i] for i in h] for h, _ in cases]
    targets = [domain.items.ids[t] for _, t in cases]
    results = load_run(run_dir)
    rows = []
    for folder in sorted(export_dir.iterdir()):
        model = load(folder)
        start = time.perf_counter()
        recs = model.recommend_batch(histories, catalogue, k=10)
        seconds = time.perf_counter() - start
        positions = [next((p for p, r in enumerate(rec) if r.item_id == t), None)
                     for rec, t in zip(recs, targets, strict=True)]  # fmt: skip
        recall = float(np.mean([p is not None for p in positions]))
        ndcg = float(np.mean([0.0 if p is None else 1.0 / math.log2(p + 2) for p in positions]))
        rows.append({
            "model": model.label,
            "recall": recall, "reported_recall": results.value(model.label, domain_name, "test", "recall@10"),
            "ndcg": ndcg, "reported_ndcg": results.value(model.label, domain_name, "test", "ndcg@10"),
            "users": len(users), "seconds": seconds,
        })  # fmt: skip
    return rows, catalogue, domain, histories


def http_bench(export: Path, items_csv: Path, histories: list[list[str]], requests: int,
               threads: int, batch: int) -> dict[str, float]:  # fmt: skip
    """Start ``silorec serve`` and time it with httpx."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "silorec.cli", "serve", str(export), "--catalogue",
         str(items_csv), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    out: dict[str, float] = {}
    try:
        started = time.monotonic()
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"silorec serve exited: {server.stderr.read().decode()[-2000:]}")
            try:
                health = httpx.get(f"{base}/health", timeout=2).json()
                break
            except httpx.TransportError:
                if time.monotonic() - started > 180:
                    raise RuntimeError("silorec serve did not answer within 180 s") from None
                time.sleep(0.3)
        out["startup_s"] = time.monotonic() - started
        out["items"] = health["items"]
        bodies = [{"history": histories[i % len(histories)], "k": 10} for i in range(requests)]
        with httpx.Client(base_url=base, timeout=30) as client:
            for body in bodies[:20]:  # warm-up
                client.post("/recommend", json=body).raise_for_status()
            latencies = []
            start = time.perf_counter()
            for body in bodies:
                t = time.perf_counter()
                client.post("/recommend", json=body).raise_for_status()
                latencies.append(time.perf_counter() - t)
            out["single_rps"] = requests / (time.perf_counter() - start)
            out["p50_ms"] = 1000 * float(np.percentile(latencies, 50))
            out["p95_ms"] = 1000 * float(np.percentile(latencies, 95))

        # The same requests from the standard library's HTTP client (keep-alive), whose
        # own cost per request is lower than httpx's on these 2 shared cores.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        encoded = [json.dumps(body).encode() for body in bodies]
        headers = {"Content-Type": "application/json"}
        latencies = []
        start = time.perf_counter()
        for payload in encoded:
            t = time.perf_counter()
            connection.request("POST", "/recommend", body=payload, headers=headers)
            reply = connection.getresponse()
            reply.read()
            if reply.status != 200:
                raise RuntimeError(f"/recommend answered {reply.status}")
            latencies.append(time.perf_counter() - t)
        out["stdlib_rps"] = requests / (time.perf_counter() - start)
        out["stdlib_p50_ms"] = 1000 * float(np.percentile(latencies, 50))
        out["stdlib_p95_ms"] = 1000 * float(np.percentile(latencies, 95))
        connection.close()

        def worker(chunk: list[dict]) -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                for body in chunk:
                    client.post("/recommend", json=body).raise_for_status()

        chunks = [bodies[i::threads] for i in range(threads)]
        pool = [threading.Thread(target=worker, args=(c,)) for c in chunks]
        start = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        out["concurrent_rps"] = requests / (time.perf_counter() - start)
        batches = [histories[i : i + batch] for i in range(0, len(histories), batch)]
        batches = [b for b in batches if len(b) == batch] or batches
        with httpx.Client(base_url=base, timeout=120) as client:
            client.post(
                "/recommend/batch", json={"histories": batches[0], "k": 10}
            ).raise_for_status()
            start, done = time.perf_counter(), 0
            for b in batches:
                client.post("/recommend/batch", json={"histories": b, "k": 10}).raise_for_status()
                done += len(b)
            out["batch_rps"] = done / (time.perf_counter() - start)
            out["batch_size"] = batch
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--domain", help="the domain to check (default: the run's first unseen)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args(argv)

    results = load_run(args.run_dir)
    scenario = Scenario.model_validate(results.scenario)
    domain_name = args.domain or next(iter(results.domains("unseen")), None)
    if domain_name is None:
        parser.error(f"{args.run_dir} has no unseen domain: name one with --domain")
    label = default_label(args.run_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    exports = work / "exports"
    exports.mkdir()
    export_model(args.run_dir, label, exports / "0-default")
    export_model(args.run_dir, "theta0", exports / "1-theta0")
    rows, catalogue, domain, histories = offline_check(args.run_dir, exports, domain_name, scenario)
    items_csv = work / "items.csv"
    _write_catalogue(domain, items_csv)
    served = http_bench(exports / "0-default", items_csv, histories, args.requests, args.threads,
                      args.batch)  # fmt: skip

    lines = [
        f"Run `{results.run_id}` ({results.scenario_name}), unseen domain `{domain_name}` "
        f"({len(catalogue):,} items), {os.cpu_count()} CPU cores.",
        "",
        "| model | users | R@10 via recommend | R@10 in the report | NDCG@10 via recommend "
        "| NDCG@10 in the report | batch recommend s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| `{r['model']}` | {r['users']} | {r['recall']:.4f} | {r['reported_recall']:.4f} "
                     f"| {r['ndcg']:.4f} | {r['reported_ndcg']:.4f} | {r['seconds']:.2f} |")  # fmt: skip
    lines += [
        "",
        f"`silorec serve` over {int(served['items']):,} items (ready in {served['startup_s']:.1f} s), "
        f"{args.requests} requests of k = 10, httpx on 127.0.0.1:",
        "",
        "| mode | recommendations / s | latency |",
        "|---|---:|---|",
        f"| single, one client (httpx) | {served['single_rps']:.0f} | p50 {served['p50_ms']:.1f} ms, "
        f"p95 {served['p95_ms']:.1f} ms |",
        f"| single, one client (http.client) | {served['stdlib_rps']:.0f} | p50 "
        f"{served['stdlib_p50_ms']:.1f} ms, p95 {served['stdlib_p95_ms']:.1f} ms |",
        f"| single, {args.threads} client threads (httpx) | {served['concurrent_rps']:.0f} | |",
        f"| batch of {int(served['batch_size'])} | {served['batch_rps']:.0f} | |",
    ]
    matches = all(abs(r["recall"] - r["reported_recall"]) < 1e-9 for r in rows)
    best_single = max(served["single_rps"], served["stdlib_rps"])
    target = best_single >= 200
    lines += ["", f"recommend matches the report on {domain_name}: {'PASS' if matches else 'MISS'}; "
              f"≥ 200 single recommendations/s: {'PASS' if target else 'MISS'} "
              f"({best_single:.0f}/s)"]  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if matches else 1


def _write_catalogue(domain, path: Path) -> None:  # noqa: ANN001 - DomainData
    """The domain's items table, as ``silorec data items`` writes it."""
    import pandas as pd

    pd.DataFrame({"item_id": domain.items.ids, **domain.items.fields}).to_csv(path, index=False)


if __name__ == "__main__":
    sys.exit(main())
