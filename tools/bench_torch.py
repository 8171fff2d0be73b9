#!/usr/bin/env python3
"""PyTorch baseline of BENCHMARKS.md's 2-D flow workloads, timed like `dualflow bench toy2d-*`.

The same network (MLPVelocity: [z, emb(t), emb(t - r)] = 130 -> 256 x 4 SiLU -> 2, PyTorch's
default initialisation), the same batch sizes and the same timing (median of the per-step wall
times after untimed warm-up steps), written the way a PyTorch user writes them:

  toy2d-cfm        CFM step on checkerboard data, CondOT path, forward + backward + Adam
  toy2d-meanflow   MeanFlow step, (u, du/dt) from torch.func.jvp, adaptive weight, Adam
  toy2d-euler      10,000 points, 100 Euler steps under torch.no_grad()
  toy2d-nll-exact  1,000 points, reverse-time Euler, 100 steps; the exact divergence as a loop
                   of per-dimension backward passes (autograd.grad of each output dim), as
                   FFJORD-style code computes it, without create_graph (evaluation only: the
                   fastest form of that loop)
  toy2d-nll-exact-ffjord  the same with create_graph=True, verbatim FFJORD's divergence_bf (its
                   evaluation runs the training code path); compared with dualflow's toy2d-nll-exact

The JSON rows record OMP_WAIT_POLICY: PyTorch's OpenMP threads spin while waiting by default,
which on a machine shared with other work (more runnable threads than cores) can cost far more
than the work itself; OMP_WAIT_POLICY=PASSIVE makes them sleep instead.

PyTorch is only the baseline here: the engine, its build and its tests never need it.

  python tools/bench_torch.py [--workload W ...] [--threads N] [--steps K] [--warmup W]
                              [--json FILE] [--compare DUALFLOW_JSON ...]
  python tools/bench_torch.py --report PYTORCH_JSON --compare DUALFLOW_JSON   (no timing)
"""
import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings

# Noise unrelated to the timings: a venv without NumPy, and torch.func's internal use of jit.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402
from torch import nn  # noqa: E402

WORKLOADS = ["toy2d-cfm", "toy2d-meanflow", "toy2d-euler", "toy2d-nll-exact", "toy2d-nll-exact-ffjord"]
# The dualflow workload each PyTorch workload is compared with.
DUALFLOW_WORKLOAD = {"toy2d-nll-exact-ffjord": "toy2d-nll-exact"}
TRAIN_BATCH = 1024
SAMPLE_POINTS = 10_000
LIKELIHOOD_POINTS = 1_000
ODE_STEPS = 100


def sinusoidal_embedding(s, dim=64, scale=1000.0, max_period=10000.0):
    """freqs_i = exp(-ln(max_period) i / (dim/2)); a = scale * s * freqs; [sin(a), cos(a)]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=s.dtype, device=s.device) / half)
    a = scale * s.reshape(-1, 1) * freqs
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class MLPVelocity(nn.Module):
    """u(z, t, h) with h = t - r: [z, emb(t), emb(h)] -> Linear 130x256, SiLU, 3 x (256x256, SiLU), 256x2."""

    def __init__(self, data_dim=2, width=256, depth=4, embedding_dim=64):
        super().__init__()
        self.embedding_dim = embedding_dim
        widths = [data_dim + 2 * embedding_dim] + [width] * depth
        layers = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), nn.SiLU()]
        layers.append(nn.Linear(width, data_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z, t, h):
        features = [z, sinusoidal_embedding(t, self.embedding_dim), sinusoidal_embedding(h, self.embedding_dim)]
        return self.net(torch.cat(features, dim=1))


def checkerboard(n):
    """x1 ~ U[-2, 2); x2 ~ U[0, 1) - 2 Bernoulli(0.5) + (floor(x1) mod 2); point = 2 (x1, x2)."""
    x1 = torch.rand(n) * 4 - 2
    x2 = torch.rand(n) - torch.randint(0, 2, (n,)).float() * 2 + torch.remainder(torch.floor(x1), 2)
    return torch.stack([x1, x2], dim=1) * 2


def logit_normal(n, mu, sigma):
    return torch.sigmoid(mu + sigma * torch.randn(n))


def make_workload(name, net):
    """Returns (batch, step): the samples a step handles and a callable running one step."""
    if name == "toy2d-cfm":
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def step():
            x1 = checkerboard(TRAIN_BATCH)
            x0 = torch.randn(TRAIN_BATCH, 2)
            t = torch.rand(TRAIN_BATCH)
            tb = t[:, None]
            x_t = (1 - tb) * x0 + tb * x1
            loss = torch.mean((net(x_t, t, torch.zeros_like(t)) - (x1 - x0)) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return TRAIN_BATCH, step

    if name == "toy2d-meanflow":
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        num_equal = int(TRAIN_BATCH * 0.75)

        def step():
            x = checkerboard(TRAIN_BATCH)
            e = torch.randn(TRAIN_BATCH, 2)
            a, b = logit_normal(TRAIN_BATCH, -0.4, 1.0), logit_normal(TRAIN_BATCH, -0.4, 1.0)
            t, r = torch.maximum(a, b), torch.minimum(a, b)
            r = torch.cat([t[:num_equal], r[num_equal:]])  # r := t for 75% of rows
            tb, rb = t[:, None], r[:, None]
            z = (1 - tb) * x + tb * e
            v = e - x
            u, dudt = torch.func.jvp(lambda z_, r_, t_: net(z_, t_, t_ - r_), (z, r, t),
                                     (v, torch.zeros_like(r), torch.ones_like(t)))
            u_tgt = (v - (tb - rb) * dudt).detach()
            err = torch.sum((u - u_tgt) ** 2, dim=1)
            loss = torch.mean((1.0 / (err + 1e-3)).detach() * err)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return TRAIN_BATCH, step

    if name == "toy2d-euler":
        noise = torch.randn(SAMPLE_POINTS, 2)
        h = torch.zeros(SAMPLE_POINTS)

        def step():
            with torch.no_grad():
                x = noise
                dt = 1.0 / ODE_STEPS
                for i in range(ODE_STEPS):
                    t = torch.full((SAMPLE_POINTS,), i * dt)
                    x = x + dt * net(x, t, h)
            return x

        return SAMPLE_POINTS, step

    if name in ("toy2d-nll-exact", "toy2d-nll-exact-ffjord"):
        data = checkerboard(LIKELIHOOD_POINTS)
        h = torch.zeros(LIKELIHOOD_POINTS)
        create_graph = name.endswith("-ffjord")

        def velocity_and_divergence(x, t):
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                v = net(x, torch.full((x.shape[0],), t), h)
                div = torch.zeros(x.shape[0])
                for i in range(x.shape[1]):
                    g = torch.autograd.grad(v[:, i].sum(), x, create_graph=create_graph,
                                            retain_graph=create_graph or i + 1 < x.shape[1])[0]
                    div = div + g.contiguous()[:, i]
            return v.detach(), div.detach()

        def step():
            x = data
            delta = torch.zeros(LIKELIHOOD_POINTS)
            dt = -1.0 / ODE_STEPS
            for i in range(ODE_STEPS):
                t = 1.0 + i * dt
                v, div = velocity_and_divergence(x, t)
                x = x + dt * v
                delta = delta + dt * div
            log_prior = -0.5 * torch.sum(x**2, dim=1) - x.shape[1] * 0.5 * math.log(2 * math.pi)
            return log_prior + delta

        return LIKELIHOOD_POINTS, step

    raise SystemExit(f"bench_torch: unknown workload '{name}' (expected one of {', '.join(WORKLOADS)})")


def quantile(sorted_times, q):
    """Linear interpolation between order statistics (numpy's default, as dualflow's bench)."""
    pos = q * (len(sorted_times) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_times) - 1)
    return sorted_times[lo] + (pos - lo) * (sorted_times[hi] - sorted_times[lo])


def time_steps(step, steps, warmup):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return {"median_ms": statistics.median(times), "min_ms": times[0], "q1_ms": quantile(times, 0.25),
            "q3_ms": quantile(times, 0.75), "max_ms": times[-1]}


def read_json_lines(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def print_comparison(torch_rows, dualflow_rows):
    """Speed-up = PyTorch ms / dualflow ms for each workload and thread count found on both sides."""
    ours = {(r["workload"], r["threads"]): r for r in dualflow_rows}
    print(f"\n{'pytorch workload':<23} {'OMP wait':>8} {'threads':>7} {'dualflow ms':>12} {'pytorch ms':>11} "
          f"{'speed-up':>9}")
    for r in sorted(torch_rows, key=lambda r: (r["threads"], r["workload"], r.get("omp_wait_policy", ""))):
        d = ours.get((DUALFLOW_WORKLOAD.get(r["workload"], r["workload"]), r["threads"]))
        if d is None:
            continue
        print(f"{r['workload']:<23} {r.get('omp_wait_policy', 'default'):>8} {r['threads']:>7} "
              f"{d['median_ms']:>12.2f} {r['median_ms']:>11.2f} {r['median_ms'] / d['median_ms']:>8.2f}x")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", action="append", choices=WORKLOADS + ["all"],
                   help="workload to time (repeatable; default: all)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: PyTorch's choice)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="also write one JSON object per workload to this file")
    p.add_argument("--compare", action="append", default=[], metavar="DUALFLOW_JSON",
                   help="dualflow bench --json output(s) to print speed-ups against (repeatable)")
    p.add_argument("--report", action="append", default=[], metavar="PYTORCH_JSON",
                   help="with --compare: print the speed-ups of these earlier --json outputs instead of timing")
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    if args.report:
        if not args.compare:
            p.error("--report needs --compare")
        print_comparison(read_json_lines(args.report), read_json_lines(args.compare))
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    workloads = WORKLOADS if not args.workload or "all" in args.workload else args.workload

    omp_wait_policy = os.environ.get("OMP_WAIT_POLICY", "default").lower()
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} thread(s) (OMP_WAIT_POLICY {omp_wait_policy}), "
          f"{args.steps} timed steps after {args.warmup} warm-up steps")
    print(f"{'workload':<23} {'batch':>6} {'median_ms':>10} {'min_ms':>9} {'q1_ms':>9} {'q3_ms':>9} {'max_ms':>9} "
          f"{'samples/s':>11}")
    rows = []
    for name in workloads:
        torch.manual_seed(args.seed)
        net = MLPVelocity()
        batch, step = make_workload(name, net)
        st = time_steps(step, args.steps, args.warmup)
        row = {"workload": name, "framework": "pytorch", "torch_version": torch.__version__, "device": "cpu",
               "threads": torch.get_num_threads(), "omp_wait_policy": omp_wait_policy, "batch": batch,
               "params": sum(q.numel() for q in net.parameters()), "steps": args.steps, "warmup": args.warmup,
               **{k: round(v, 4) for k, v in st.items()},
               "samples_per_s": round(batch / (st["median_ms"] / 1000.0), 1)}
        rows.append(row)
        print(f"{name:<23} {batch:>6} {st['median_ms']:>10.3f} {st['min_ms']:>9.3f} {st['q1_ms']:>9.3f} "
              f"{st['q3_ms']:>9.3f} {st['max_ms']:>9.3f} {row['samples_per_s']:>11.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    if args.compare:
        print_comparison(rows, read_json_lines(args.compare))
    return 0


if __name__ == "__main__":
    sys.exit(main())
