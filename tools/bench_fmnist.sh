#!/usr/bin/env bash
# The Fashion-MNIST U-Net CFM and DiT-S/4 MeanFlow steps against PyTorch: tools/bench_vs_torch.sh
# fmnist (its header lists the settings: THREADS, STEPS, WARMUP, WORKLOADS, OUT, TORCH_PYTHON,
# FULLBATCH, TORCH_PASSIVE). A step is seconds long on a 2-core CPU, so a run takes tens of minutes.
exec "$(dirname "$0")/bench_vs_torch.sh" fmnist "$@"
