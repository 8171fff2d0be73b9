#!/usr/bin/env python3
"""PyTorch baseline of the flow workloads of docs/BENCHMARKS.md, timed like `dualflow bench toy2d-* | fmnist-*`.

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

The image workloads (28x28x1, batch 64, AdamW lr 1e-4, random images in [-1, 1) with labels
0..9 drawn before timing) use modules that replicate dualflow's models/unet.cpp and
models/dit.cpp layer for layer (same parameter count, printed by --params and kept in the JSON):

  fmnist-unet-cfm  UNet (base 32, [1, 2, 2], 2 res blocks, attention at 7x7 with 4 heads,
                   GroupNorm(8), 10 classes + null), CFM step on the CondOT path
  fmnist-dit-meanflow  DiT-S/4 with t and h embedders, MeanFlow step as dualflow's
                   meanflow_loss computes it: a plain forward on the 75% of rows with r = t and
                   torch.func.jvp on the other 25% only (the same arithmetic on both sides)
  fmnist-dit-meanflow-fullbatch  the same loss with torch.func.jvp over the whole batch, as the
                   official MeanFlow code and the toy2d-meanflow workload write it; compared
                   with dualflow's fmnist-dit-meanflow

DiT's attention is written out (softmax(q k^T / sqrt(d)) v) because PyTorch's fused CPU
attention has no forward-mode derivative; the U-Net, which needs no JVP, uses
F.scaled_dot_product_attention.

The JSON rows record OMP_WAIT_POLICY: PyTorch's OpenMP threads spin while waiting by default,
which on a machine shared with other work (more runnable threads than cores) can cost far more
than the work itself; OMP_WAIT_POLICY=PASSIVE makes them sleep instead.

PyTorch is only the baseline here: the engine, its build and its tests never need it.

  python tools/bench_torch.py [--workload W ...] [--threads N] [--steps K] [--warmup W] [--device cuda]
                              [--json FILE] [--compare DUALFLOW_JSON ...]
  (default: the toy2d workloads; --workload all adds the image ones)
  python tools/bench_torch.py --params [--workload W ...]   (parameters and counts, no timing)
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
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

TOY2D_WORKLOADS = ["toy2d-cfm", "toy2d-meanflow", "toy2d-euler", "toy2d-nll-exact", "toy2d-nll-exact-ffjord"]
IMAGE_WORKLOADS = ["fmnist-unet-cfm", "fmnist-dit-meanflow", "fmnist-dit-meanflow-fullbatch"]
WORKLOADS = TOY2D_WORKLOADS + IMAGE_WORKLOADS
# The dualflow workload each PyTorch workload is compared with.
DUALFLOW_WORKLOAD = {"toy2d-nll-exact-ffjord": "toy2d-nll-exact", "fmnist-dit-meanflow-fullbatch": "fmnist-dit-meanflow"}
TRAIN_BATCH = 1024
SAMPLE_POINTS = 10_000
LIKELIHOOD_POINTS = 1_000
ODE_STEPS = 100
IMAGE_BATCH = 64
IMAGE_SIZE = 28
IMAGE_CLASSES = 10
IMAGE_BATCHES = 4  # random batches drawn before timing and cycled through


def sinusoidal_embedding(s, dim=64, scale=1000.0, max_period=10000.0, cos_first=False):
    """freqs_i = exp(-ln(max_period) i / (dim/2)); a = scale * s * freqs; [sin(a), cos(a)] (or cos first)."""
    half = dim // 2
    freqs = scale * torch.exp(-math.log(max_period) * torch.arange(half, dtype=s.dtype, device=s.device) / half)
    a = s.reshape(-1, 1) * freqs
    return torch.cat([torch.cos(a), torch.sin(a)] if cos_first else [torch.sin(a), torch.cos(a)], dim=1)


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


# ---- the image networks: dualflow's models/ layer for layer ----


class TimestepEmbedder(nn.Module):
    """Sinusoidal features -> Linear(freq_dim, hidden) -> SiLU -> Linear(hidden, hidden) (models/embeddings.cpp)."""

    def __init__(self, hidden, frequency_dim, cos_first):
        super().__init__()
        self.frequency_dim, self.cos_first = frequency_dim, cos_first
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        return self.mlp(sinusoidal_embedding(t, self.frequency_dim, cos_first=self.cos_first))


class LabelEmbedding(nn.Module):
    """num_classes labels plus the null class at index num_classes."""

    def __init__(self, num_classes, dim):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels):
        return self.embedding_table(labels)


def conditioning(t_embedder, h_embedder, y_embedder, t, h, labels):
    """emb(t) (+ emb(h)) (+ class embedding), as models/embeddings.cpp's conditioning_embedding."""
    c = t_embedder(t)
    if h_embedder is not None:
        c = c + h_embedder(h)
    if y_embedder is not None:
        c = c + y_embedder(labels)
    return c


class MultiheadSelfAttention(nn.Module):
    """Fused qkv Linear, heads split, attention per head, output Linear "proj" (models/attention.cpp)."""

    def __init__(self, dim, heads, fused):
        super().__init__()
        self.heads, self.fused = heads, fused
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:  # differentiable in forward mode, as torch.func.jvp needs
            out = torch.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1), dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


def zero_(module):
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = zero_(nn.Conv2d(cout, cout, 3, padding=1))  # dropout 0: no dropout layer
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class AttentionBlock(nn.Module):
    def __init__(self, channels, heads, groups):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, channels), channels)
        self.attn = MultiheadSelfAttention(channels, heads, fused=True)
        zero_(self.attn.proj)

    def forward(self, x):
        n, c, hh, ww = x.shape
        tokens = self.norm(x).reshape(n, c, hh * ww).transpose(1, 2)
        return x + self.attn(tokens).transpose(1, 2).reshape(x.shape)


class UNetStage(nn.Module):
    def __init__(self, res, attn):
        super().__init__()
        self.res, self.attn = res, attn

    def forward(self, x, emb):
        h = self.res(x, emb)
        return h if self.attn is None else self.attn(h)


class Resample(nn.Module):
    def __init__(self, channels, up):
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(channels, channels, 3, stride=1 if up else 2, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest") if self.up else x)


class UNet(nn.Module):
    """models/unet.cpp's UNet with conv resampling and no dropout, built by the same loop."""

    def __init__(self, in_channels=1, image_size=28, base=32, mult=(1, 2, 2), num_res_blocks=2,
                 attention_resolutions=(7,), heads=4, groups=8, num_classes=10, use_h=False):
        super().__init__()
        emb = 4 * base
        freq_dim = base + base % 2
        self.mult, self.num_res_blocks = mult, num_res_blocks
        self.t_embedder = TimestepEmbedder(emb, freq_dim, cos_first=False)
        self.h_embedder = TimestepEmbedder(emb, freq_dim, cos_first=False) if use_h else None
        self.y_embedder = LabelEmbedding(num_classes, emb) if num_classes > 0 else None
        self.input_conv = nn.Conv2d(in_channels, base, 3, padding=1)

        def stage(cin, cout, res):
            attn = AttentionBlock(cout, heads, groups) if res in attention_resolutions else None
            return UNetStage(ResBlock(cin, cout, emb, groups), attn)

        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skip_channels, ch, res = [base], base, image_size
        for level, m in enumerate(mult):
            out = base * m
            for _ in range(num_res_blocks):
                self.down.append(stage(ch, out, res))
                ch = out
                skip_channels.append(ch)
            if level + 1 < len(mult):
                self.downsample.append(Resample(ch, up=False))
                skip_channels.append(ch)
                res //= 2
        self.middle_in = UNetStage(ResBlock(ch, ch, emb, groups), AttentionBlock(ch, heads, groups))
        self.middle_out = ResBlock(ch, ch, emb, groups)
        self.up, self.upsample, self.up_level = nn.ModuleList(), nn.ModuleList(), []
        for level in reversed(range(len(mult))):
            out = base * mult[level]
            for _ in range(num_res_blocks + 1):
                self.up.append(stage(ch + skip_channels.pop(), out, res))
                self.up_level.append(level)
                ch = out
            if level > 0:
                self.upsample.append(Resample(ch, up=True))
                res *= 2
        self.output_norm = nn.GroupNorm(min(groups, ch), ch)
        self.output_conv = zero_(nn.Conv2d(ch, in_channels, 3, padding=1))

    def forward(self, x, t, h=None, labels=None):
        emb = conditioning(self.t_embedder, self.h_embedder, self.y_embedder, t, h, labels)
        hcur = self.input_conv(x)
        skips = [hcur]
        stage = 0
        for level in range(len(self.mult)):
            for _ in range(self.num_res_blocks):
                hcur = self.down[stage](hcur, emb)
                stage += 1
                skips.append(hcur)
            if level + 1 < len(self.mult):
                hcur = self.downsample[level](hcur)
                skips.append(hcur)
        hcur = self.middle_out(self.middle_in(hcur, emb), emb)
        up = 0
        for i, block in enumerate(self.up):
            hcur = block(torch.cat([hcur, skips.pop()], dim=1), emb)
            level_ends = i + 1 == len(self.up) or self.up_level[i + 1] != self.up_level[i]
            if level_ends and self.up_level[i] > 0:
                hcur = self.upsample[up](hcur)
                up += 1
        return self.output_conv(F.silu(self.output_norm(hcur)))


def sincos_pos_embed_2d(dim, grid):
    """MAE's 2-D sin-cos table [grid * grid, dim]: first half embeds the column, second the row."""
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                                indexing="ij")
    parts = []
    for pos in (cols.reshape(-1), rows.reshape(-1)):
        a = pos[:, None] * omega[None, :]
        parts += [torch.sin(a), torch.cos(a)]
    return torch.cat(parts, dim=1).float()


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    """A conv with kernel = stride = patch (DiT's timm PatchEmbed): [N, C, H, W] -> [N, tokens, hidden]."""

    def __init__(self, in_channels, hidden, patch):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class TransformerMlp(nn.Module):
    """fc1 -> GELU (tanh) -> fc2 (timm's Mlp)."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = MultiheadSelfAttention(hidden, heads, fused=False)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = TransformerMlp(hidden, mlp_hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class DiTFinalLayer(nn.Module):
    def __init__(self, hidden, patch, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """models/dit.cpp's DiT (the reference DiT with an h embedder), defaults DiT-S/4 on 28x28x1."""

    def __init__(self, input_size=28, in_channels=1, patch=4, hidden=384, depth=12, heads=6, mlp_ratio=4.0,
                 num_classes=10, use_h=True, frequency_dim=256):
        super().__init__()
        self.in_channels, self.patch, self.grid = in_channels, patch, input_size // patch
        self.x_embedder = PatchEmbed(in_channels, hidden, patch)
        self.t_embedder = TimestepEmbedder(hidden, frequency_dim, cos_first=True)
        self.h_embedder = TimestepEmbedder(hidden, frequency_dim, cos_first=True) if use_h else None
        self.y_embedder = LabelEmbedding(num_classes, hidden) if num_classes > 0 else None
        self.register_buffer("pos_embed", sincos_pos_embed_2d(hidden, self.grid).unsqueeze(0))
        self.blocks = nn.ModuleList([DiTBlock(hidden, heads, int(hidden * mlp_ratio)) for _ in range(depth)])
        self.final_layer = DiTFinalLayer(hidden, patch, in_channels)
        # The reference initialisation (as DiT::initialize_weights).
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        for te in (self.t_embedder, self.h_embedder):
            if te is not None:
                nn.init.normal_(te.mlp[0].weight, std=0.02)
                nn.init.normal_(te.mlp[2].weight, std=0.02)
        for block in self.blocks:
            zero_(block.adaLN_modulation[1])
        zero_(self.final_layer.adaLN_modulation[1])
        zero_(self.final_layer.linear)

    def forward(self, x, t, h=None, labels=None):
        c = conditioning(self.t_embedder, self.h_embedder, self.y_embedder, t, h, labels)
        tokens = self.x_embedder(x) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens, c)
        x = self.final_layer(tokens, c)
        n, g, p, ch = x.shape[0], self.grid, self.patch, self.in_channels
        return x.reshape(n, g, g, p, p, ch).permute(0, 5, 1, 3, 2, 4).reshape(n, ch, g * p, g * p)


def make_network(name):
    if name.startswith("fmnist-unet"):
        return UNet()
    if name.startswith("fmnist-dit"):
        return DiT()
    return MLPVelocity()


def image_pool():
    """IMAGE_BATCHES random batches: images U[-1, 1) [64, 1, 28, 28] and labels 0..9."""
    return [(torch.rand(IMAGE_BATCH, 1, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1, torch.randint(0, IMAGE_CLASSES, (IMAGE_BATCH,)))
            for _ in range(IMAGE_BATCHES)]


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

    if name == "fmnist-unet-cfm":
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)  # weight decay 0.01, as dualflow's adamw
        pool, taken = image_pool(), [0]

        def step():
            x1, labels = pool[taken[0] % len(pool)]
            taken[0] += 1
            x0 = torch.randn_like(x1)
            t = torch.rand(IMAGE_BATCH)
            tb = t[:, None, None, None]
            x_t = (1 - tb) * x0 + tb * x1
            loss = torch.mean((net(x_t, t, None, labels) - (x1 - x0)) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return IMAGE_BATCH, step

    if name in ("fmnist-dit-meanflow", "fmnist-dit-meanflow-fullbatch"):
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        pool, taken = image_pool(), [0]
        # r = t on the leading 75% of rows (dualflow's sample_meanflow_times layout).
        k = 0 if name.endswith("-fullbatch") else int(IMAGE_BATCH * 0.75)

        def step():
            x, labels = pool[taken[0] % len(pool)]
            taken[0] += 1
            a, b = logit_normal(IMAGE_BATCH, -0.4, 1.0), logit_normal(IMAGE_BATCH, -0.4, 1.0)
            t, r = torch.maximum(a, b), torch.minimum(a, b)
            r = torch.cat([t[:int(IMAGE_BATCH * 0.75)], r[int(IMAGE_BATCH * 0.75):]])
            e = torch.randn_like(x)
            tb = t[:, None, None, None]
            z = (1 - tb) * x + tb * e
            v = e - x
            # Rows with r = t have the target v (no du/dt): a plain forward; the JVP on the rest
            # (on every row with -fullbatch).
            if k > 0:
                u_flat = net(z[:k], t[:k], t[:k] - r[:k], labels[:k])
            lj = labels[k:]
            u, dudt = torch.func.jvp(lambda z_, r_, t_: net(z_, t_, t_ - r_, lj), (z[k:], r[k:], t[k:]),
                                     (v[k:], torch.zeros_like(r[k:]), torch.ones_like(t[k:])))
            if k > 0:
                u = torch.cat([u_flat, u])
                dudt = torch.cat([torch.zeros_like(u_flat), dudt])
            gap = torch.clamp(t - r, 0.0, 1.0)[:, None, None, None]
            u_tgt = (v - gap * dudt).detach()
            err = torch.sum((u - u_tgt) ** 2, dim=(1, 2, 3))
            loss = torch.mean((1.0 / (err + 1e-3)).detach() * err)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return IMAGE_BATCH, step

    raise SystemExit(f"bench_torch: unknown workload '{name}' (expected one of {', '.join(WORKLOADS)})")


def quantile(sorted_times, q):
    """Linear interpolation between order statistics (numpy's default, as dualflow's bench)."""
    pos = q * (len(sorted_times) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_times) - 1)
    return sorted_times[lo] + (pos - lo) * (sorted_times[hi] - sorted_times[lo])


def time_steps(step, steps, warmup, sync=lambda: None):
    """Per-step wall times; `sync` waits for queued device work (CUDA runs asynchronously)."""
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
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
    """Speed-up = PyTorch ms / dualflow ms for each workload and thread count found on both sides.

    Beside it, from dualflow's GEMM roofline: `roofline`, the share of dualflow's step that its
    GEMMs take when timed alone; `paired`, the same share measured in rounds of one step and then
    its GEMMs (the median of the rounds' ratios, which a load that changes during the run moves
    less); and `ceiling`, PyTorch ms / those GEMMs' time alone: the speed-up dualflow would reach
    if everything but its GEMMs cost nothing (only a faster GEMM goes beyond).
    """
    ours = {(r["workload"], r["threads"]): r for r in dualflow_rows}
    print(f"\n{'pytorch workload':<29} {'OMP wait':>8} {'threads':>7} {'dualflow ms':>12} {'pytorch ms':>11} "
          f"{'speed-up':>9} {'roofline':>9} {'paired':>7} {'ceiling':>8}  params")
    for r in sorted(torch_rows, key=lambda r: (r["threads"], r["workload"], r.get("omp_wait_policy", ""))):
        d = ours.get((DUALFLOW_WORKLOAD.get(r["workload"], r["workload"]), r["threads"]))
        if d is None:
            continue
        # Both sides' parameter counts: equal when the networks are the same.
        params = (f"{d['params']:,} (both)" if d.get("params") == r.get("params")
                  else f"dualflow {d.get('params')} != pytorch {r.get('params')}")
        alone = d.get("gemm_alone_ms", 0.0)
        roofline = f"{100 * d['gemm_roofline']:.0f}%" if alone > 0 else "-"
        paired = f"{100 * d['gemm_roofline_paired']:.0f}%" if alone > 0 and "gemm_roofline_paired" in d else "-"
        ceiling = f"{r['median_ms'] / alone:.2f}x" if alone > 0 else "-"
        print(f"{r['workload']:<29} {r.get('omp_wait_policy', 'default'):>8} {r['threads']:>7} "
              f"{d['median_ms']:>12.2f} {r['median_ms']:>11.2f} {r['median_ms'] / d['median_ms']:>8.2f}x "
              f"{roofline:>9} {paired:>7} {ceiling:>8}  {params}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", action="append", choices=WORKLOADS + ["all"],
                   help="workload to time (repeatable; default: the toy2d ones; all: every workload)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: PyTorch's choice)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N: every tensor and module is made there (torch.set_default_device)")
    p.add_argument("--json", help="also write one JSON object per workload to this file")
    p.add_argument("--compare", action="append", default=[], metavar="DUALFLOW_JSON",
                   help="dualflow bench --json output(s) to print speed-ups against (repeatable)")
    p.add_argument("--params", action="store_true",
                   help="list each workload's parameters with their shapes and the count, then exit without timing")
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
    sync = lambda: None  # noqa: E731
    if args.device != "cpu":
        if not hasattr(torch, "set_default_device"):
            p.error(f"--device {args.device} needs PyTorch 2.0 or later (this is {torch.__version__})")
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            p.error(f"--device {args.device}: this PyTorch sees no CUDA device")
        torch.set_default_device(args.device)
        if args.device.startswith("cuda"):
            sync = lambda: torch.cuda.synchronize(args.device)  # noqa: E731
    workloads = (TOY2D_WORKLOADS if not args.workload else WORKLOADS if "all" in args.workload else args.workload)
    if args.params:
        for name in workloads:
            torch.manual_seed(args.seed)
            net = make_network(name)
            for pname, q in net.named_parameters():  # to hold against `dualflow bench W --params`
                print(f"{pname:<48} [{', '.join(map(str, q.shape))}]")
            print(f"{name}: {type(net).__name__} ({sum(q.numel() for q in net.parameters())} params)")
        return 0

    omp_wait_policy = os.environ.get("OMP_WAIT_POLICY", "default").lower()
    print(f"PyTorch {torch.__version__} on {args.device}, {torch.get_num_threads()} thread(s) (OMP_WAIT_POLICY {omp_wait_policy}), "
          f"{args.steps} timed steps after {args.warmup} warm-up steps")
    print(f"{'workload':<29} {'batch':>6} {'median_ms':>10} {'min_ms':>9} {'q1_ms':>9} {'q3_ms':>9} {'max_ms':>9} "
          f"{'samples/s':>11} {'params':>11}")
    rows = []
    for name in workloads:
        torch.manual_seed(args.seed)
        net = make_network(name)
        batch, step = make_workload(name, net)
        st = time_steps(step, args.steps, args.warmup, sync)
        row = {"workload": name, "framework": "pytorch", "torch_version": torch.__version__, "device": args.device,
               "threads": torch.get_num_threads(), "omp_wait_policy": omp_wait_policy, "batch": batch,
               "params": sum(q.numel() for q in net.parameters()), "steps": args.steps, "warmup": args.warmup,
               **{k: round(v, 4) for k, v in st.items()},
               "samples_per_s": round(batch / (st["median_ms"] / 1000.0), 1)}
        rows.append(row)
        print(f"{name:<29} {batch:>6} {st['median_ms']:>10.3f} {st['min_ms']:>9.3f} {st['q1_ms']:>9.3f} "
              f"{st['q3_ms']:>9.3f} {st['max_ms']:>9.3f} {row['samples_per_s']:>11.0f} {row['params']:>11}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    if args.compare:
        print_comparison(rows, read_json_lines(args.compare))
    return 0


if __name__ == "__main__":
    sys.exit(main())
