#!/usr/bin/env python3
"""Network evaluations of scipy's RK45 and torchdiffeq's dopri5 on a trained toy2d flow.

Rebuilds the velocity of a `dualflow train` checkpoint of the 2-D MLP network (`model.kind =
"mlp"`, flow matching: input [z, emb(t)], the EMA weights that `dualflow sample` uses) in
NumPy and PyTorch, integrates N(0, I) noise of N points from t = 0 to 1 as one system of 2N
unknowns at rtol = atol = TOL with both solvers, and prints their NFE and their endpoint
difference from a tight solve. `dualflow sample --solver dopri5 --rtol TOL --atol TOL --n N
--seed S` prints the engine's NFE for the same field (its noise differs: compare over seeds).

  python3 tools/reference/dopri5_trained_field.py CHECKPOINT [--n 4000] [--tol 1e-5] [--seeds 3]

Needs numpy, scipy, torch and torchdiffeq (pip install numpy scipy torch torchdiffeq).
"""
import argparse
import json
import re
import struct

import numpy as np


def load_checkpoint(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or not name.startswith("ema."):
            continue
        assert info["dtype"] == "F32", f"{name}: expected F32, got {info['dtype']}"
        begin, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype=np.float32).reshape(info["shape"]).astype(np.float64)
    return tensors, header.get("__metadata__", {})


def time_scale_of(metadata):
    config = metadata.get("dualflow.config", "")
    m = re.search(r"^\s*time_scale\s*=\s*([0-9.eE+-]+)", config, re.MULTILINE)
    return float(m.group(1)) if m else 1000.0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--seeds", type=int, default=3)
    a = p.parse_args()

    import scipy.integrate
    import torch
    import torchdiffeq

    tensors, metadata = load_checkpoint(a.checkpoint)
    layers = sorted({int(k.split(".")[2]) for k in tensors if k.startswith("ema.net.")})
    weights = [(tensors[f"ema.net.{i}.weight"], tensors[f"ema.net.{i}.bias"]) for i in layers]
    assert weights[0][0].shape[1] == 2 + 64, "expected the flow-matching MLP: input [z (2), emb(t) (64)]"
    scale = time_scale_of(metadata)
    freqs = scale * np.exp(-np.log(10000.0) * np.arange(32) / 32)

    def velocity_np(t, z):
        a_ = t * freqs
        h = np.concatenate([z, np.broadcast_to(np.concatenate([np.sin(a_), np.cos(a_)]), (z.shape[0], 64))], 1)
        for i, (w, b) in enumerate(weights):
            h = h @ w.T + b
            if i + 1 < len(weights):
                h = h / (1 + np.exp(-h))
        return h

    tw = [(torch.tensor(w), torch.tensor(b)) for w, b in weights]
    tfreqs = torch.tensor(freqs)

    def velocity_torch(t, z):
        a_ = t * tfreqs
        e = torch.cat([torch.sin(a_), torch.cos(a_)]).expand(z.shape[0], 64)
        h = torch.cat([z, e], 1)
        for i, (w, b) in enumerate(tw):
            h = h @ w.T + b
            if i + 1 < len(tw):
                h = torch.nn.functional.silu(h)
        return h

    print(f"{a.checkpoint}: time_scale {scale}, {len(weights)} layers, n {a.n}, rtol = atol = {a.tol}")
    print(f"{'seed':>4} {'scipy RK45 NFE':>15} {'torchdiffeq NFE':>16} {'scipy error':>12} {'torchdiffeq error':>18}")
    for seed in range(a.seeds):
        z0 = np.random.default_rng(seed).standard_normal((a.n, 2))
        calls = [0]

        def f(t, y):
            calls[0] += 1
            return velocity_np(t, y.reshape(-1, 2)).ravel()

        sol = scipy.integrate.solve_ivp(f, (0.0, 1.0), z0.ravel(), method="RK45", rtol=a.tol, atol=a.tol)
        scipy_nfe = calls[0]
        tight = scipy.integrate.solve_ivp(f, (0.0, 1.0), z0.ravel(), method="DOP853", rtol=1e-10, atol=1e-10)
        reference = tight.y[:, -1]
        tcalls = [0]

        def g(t, y):
            tcalls[0] += 1
            return velocity_torch(t, y)

        with torch.no_grad():
            out = torchdiffeq.odeint(g, torch.tensor(z0), torch.tensor([0.0, 1.0], dtype=torch.float64),
                                     method="dopri5", rtol=a.tol, atol=a.tol)
        rms = lambda d: float(np.sqrt(np.mean(d ** 2)))
        print(f"{seed:>4} {scipy_nfe:>15} {tcalls[0]:>16} {rms(sol.y[:, -1] - reference):>12.3g} "
              f"{rms(out[-1].numpy().ravel() - reference):>18.3g}")


if __name__ == "__main__":
    main()
