"""Benchmark of KCenterGreedy / KCenterGreedy-CB (streaming, :func:`kcenter_greedy`) against the naive version.

Synthetic, seeded, CIFAR-100-LT-like data: pool embeddings from a Gaussian mixture of C = 100 classes with
long-tailed class frequencies (IF = 0.1), a long-tailed labeled set, softmax probabilities of a ~65 % accurate
model biased to the head classes, and Omega from Eq. 4 at cycle 1 (head classes get Omega_c = 0).

* ``stream``: :func:`kcenter_greedy` on CPU (min-distance vector, chunked initial distances, one row per pick);
  CB uses ``lam = 1`` with ``normalize=True``.
* ``naive``: the official code's layout: the full N x L distance matrix and the full N x N pool matrix built
  up front (float32, torch, in place), then per pick a column of the N x N matrix and, for CB, the brute-force
  ``|Omega - P^T z - P|_1`` over all N x C entries (Algorithm 2, line 3 verbatim). N x N must fit in 4 GB.

Every method runs in a fresh Python subprocess; ``extra_mb`` is the peak resident set of that process
(``ru_maxrss``, which sees torch allocations) minus its resident set just before the call (data already built).

Usage: ``python benchmarks/kcenter.py [--n 45000] [--n-naive 32000] [--out benchmarks/results/kcenter.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cbal_lightning.selection import class_targets
from cbal_lightning.selection._greedy import single_thread_on_cpu
from cbal_lightning.selection.kcenter import kcenter_greedy

LABELED, DIM, CLASSES, BUDGET, LAM = 5_000, 512, 100, 2_500, 1.0


def synthetic(n: int, n_labeled: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Pool/labeled embeddings, pool probabilities and Omega (Eq. 4) of a long-tailed 100-class problem."""
    rng = np.random.default_rng(seed)
    freq = 0.1 ** (np.arange(CLASSES) / (CLASSES - 1))
    freq /= freq.sum()
    centers = rng.standard_normal((CLASSES, DIM)).astype(np.float32)
    pool_y, lab_y = rng.choice(CLASSES, n, p=freq), rng.choice(CLASSES, n_labeled, p=freq)
    pool = centers[pool_y] + 1.5 * rng.standard_normal((n, DIM), dtype=np.float32)
    labeled = centers[lab_y] + 1.5 * rng.standard_normal((n_labeled, DIM), dtype=np.float32)
    logits = rng.standard_normal((n, CLASSES)) + np.log(freq) * 0.5
    logits[np.arange(n), pool_y] += 4.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    omega = class_targets(np.bincount(lab_y, minlength=CLASSES), BUDGET, 1, n_labeled)
    return {"pool": pool, "labeled": labeled, "probs": probs, "omega": omega}


def naive(data: dict[str, np.ndarray], lam: float) -> np.ndarray:
    """Full N x L and N x N distance matrices, then Algorithm 2 with a brute-force L1 per step."""
    pool, labeled = torch.from_numpy(data["pool"]), torch.from_numpy(data["labeled"])
    probs, residual = torch.from_numpy(data["probs"]), torch.from_numpy(data["omega"]).clone()
    sq, lab_sq = (pool * pool).sum(1), (labeled * labeled).sum(1)
    d_nl = (pool @ labeled.T).mul_(-2).add_(sq[:, None]).add_(lab_sq[None]).clamp_min_(0).sqrt_()
    d_nn = (pool @ pool.T).mul_(-2).add_(sq[:, None]).add_(sq[None]).clamp_min_(0).sqrt_()
    min_dist = d_nl.min(dim=1).values
    scale, picks = float(min_dist.max()), []
    with single_thread_on_cpu(torch.device("cpu")):
        for _ in range(BUDGET):
            if lam == 0:
                j = int(torch.argmax(min_dist))
            else:  # Algorithm 2, line 3, brute force over all N x C entries
                objective = lam * (residual[None] - probs).abs().sum(1) - min_dist.double() / scale
                j = int(torch.argmin(objective))
                residual -= probs[j]
            picks.append(j)
            torch.minimum(min_dist, d_nn[j], out=min_dist)  # d_nn is symmetric: row j is column j
            min_dist[j] = -torch.inf
    return np.sort(picks)


def run_child(method: str, n: int) -> dict[str, float | int | str]:
    """Run one method on freshly built data in this process; time it and measure its extra peak RSS."""
    data = synthetic(n, LABELED)
    rss_before = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    start = time.perf_counter()
    kind, variant = method.split("_")
    lam = LAM if variant == "cb" else 0.0
    if kind == "stream":
        picks = kcenter_greedy(data["pool"], data["labeled"], BUDGET, probs=data["probs"], omega=data["omega"],
                               lam=lam, normalize=True, device="cpu").indices
    else:
        picks = naive(data, lam)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    l1 = float(np.abs(data["omega"] - data["probs"][picks].sum(axis=0)).sum())
    return {"method": method, "n": n, "seconds": round(seconds, 2), "extra_mb": round((peak - rss_before) / 2**20),
            "l1_deviation": round(l1, 1), "picks": picks.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=45_000)
    parser.add_argument("--n-naive", type=int, default=32_000)
    parser.add_argument("--out", default="benchmarks/results/kcenter.json")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child[0], int(args.child[1]))))
        return
    runs = [("stream_plain", args.n), ("stream_cb", args.n), ("stream_plain", args.n_naive),
            ("stream_cb", args.n_naive), ("naive_plain", args.n_naive), ("naive_cb", args.n_naive)]
    rows = []
    for method, n in runs:
        out = subprocess.run([sys.executable, __file__, "--child", method, str(n)], check=True, capture_output=True,
                             text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print({k: v for k, v in rows[-1].items() if k != "picks"}, flush=True)
    by_key = {(r["method"], r["n"]): r for r in rows}
    for variant in ("plain", "cb"):
        stream, slow = by_key[(f"stream_{variant}", args.n_naive)], by_key[(f"naive_{variant}", args.n_naive)]
        slow["speedup_of_stream"] = round(slow["seconds"] / stream["seconds"], 2)
        slow["memory_ratio"] = round(slow["extra_mb"] / max(stream["extra_mb"], 1), 1)
        slow["overlap_with_stream"] = len(set(slow["picks"]) & set(stream["picks"])) / BUDGET
    print(f"\n{'method':<14}{'N':>8}{'seconds':>10}{'extra MB':>10}{'L1 dev':>9}")
    for r in rows:
        print(f"{r['method']:<14}{r['n']:>8}{r['seconds']:>10}{r['extra_mb']:>10}{r['l1_deviation']:>9}")
    for r in rows:
        del r["picks"]
    meta = {"labeled": LABELED, "dim": DIM, "classes": CLASSES, "budget": BUDGET, "lam": LAM, "normalize": True,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "platform": platform.platform(), "memory": "ru_maxrss peak minus RSS before the call, per subprocess"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
