"""Reference trajectories of torch.optim.AdamW (and SGD, Adam) for tests/train/test_optim.cpp.

Run once with PyTorch installed (python3 tools/reference/adamw_trajectory.py) and paste the
printed C++ arrays into the test; PyTorch is never a dependency of the engine or of the tests.
Everything is f64 on the CPU with the single-tensor (foreach=False) implementations. The
gradient of step k (counting from 0) is a fixed function of the current parameter,
g = p*p*p - 0.5*p + 0.1*(k + 1), written with multiplications only so that the C++ test forms
bit-identical gradients; the learning rate changes per step to exercise its use in every term.
"""
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402

torch.set_default_dtype(torch.float64)

W0 = [[0.5, -1.25, 2.0], [0.75, -0.3, 1.1]]
B0 = [0.2, -0.7, 0.05]
LRS = [0.01, 0.02, 0.03, 0.03, 0.015]


def grad_of(p, k):
    return p * p * p - 0.5 * p + 0.1 * (k + 1)


def run(make):
    w = torch.tensor(W0, requires_grad=True)
    b = torch.tensor(B0, requires_grad=True)
    opt = make([w, b])
    per_step = []
    for k, lr in enumerate(LRS):
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            w.grad = grad_of(w.detach(), k)
            b.grad = grad_of(b.detach(), k)
        opt.step()
        per_step.append(w.detach().flatten().tolist() + b.detach().flatten().tolist())
    state = []
    for pname, p in (("w", w), ("b", b)):
        st = opt.state[p]
        for key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
            if key in st and st[key] is not None:
                state.append((f"{key}.{pname}", st[key].flatten().tolist()))
    return per_step, state


def cpp(values):
    return "{" + ", ".join(repr(float(v)) for v in values) + "}"


def emit(name, make):
    per_step, state = run(make)
    print(f"// {name}: parameters [w (2x3) row-major, b (3)] after each step")
    print(f"const std::vector<std::vector<double>> k{name}Steps = {{")
    for row in per_step:
        print(f"    {cpp(row)},")
    print("};")
    for key, vals in state:
        print(f"// {name} final {key}: {cpp(vals)}")
    print()


print(f"// torch {torch.__version__}")
emit("AdamW", lambda ps: torch.optim.AdamW(ps, lr=LRS[0], betas=(0.9, 0.99), eps=1e-8,
                                           weight_decay=0.1, foreach=False))
emit("Adam", lambda ps: torch.optim.Adam(ps, lr=LRS[0], betas=(0.8, 0.95), eps=1e-6,
                                         weight_decay=0.05, foreach=False))
emit("SgdNesterov", lambda ps: torch.optim.SGD(ps, lr=LRS[0], momentum=0.9, nesterov=True,
                                               weight_decay=0.01, foreach=False))
emit("SgdDampened", lambda ps: torch.optim.SGD(ps, lr=LRS[0], momentum=0.5, dampening=0.3,
                                               foreach=False))
