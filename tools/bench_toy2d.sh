#!/usr/bin/env bash
# The toy2d workloads against PyTorch: tools/bench_vs_torch.sh toy2d (its header lists the
# settings: THREADS, STEPS, WARMUP, WORKLOADS, OUT, TORCH_PYTHON, FFJORD, TORCH_PASSIVE).
exec "$(dirname "$0")/bench_vs_torch.sh" toy2d "$@"
