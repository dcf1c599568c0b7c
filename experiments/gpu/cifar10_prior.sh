#!/usr/bin/env bash
# Paper-scale check of the label-shift correction (issue 10) on one GPU, within ~10 minutes of device time:
# CIFAR-10-LT (the shared JPEGs), IF 0.1, ResNet-18 (CIFAR stem), the paper's 10 % initial set (5,000 labels)
# and 5 % budget (2,500 per query), 2 queries, Entropy vs the paper's Entropy-CB (uncorrected P) vs the corrected
# Entropy-CB (the default), both with lambda chosen per query by the paper's rule (lam="auto").
# Epochs are cut from the paper's 100 to 30 per cycle to fit the device budget.
#
#   bash experiments/gpu/cifar10_prior.sh [OUT]     # OUT defaults to docs/results/gpu_cifar10_prior
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-docs/results/gpu_cifar10_prior}
export CUBLAS_WORKSPACE_CONFIG=:4096:8   # deterministic cuBLAS (the script asks for deterministic="warn" on GPUs)
python experiments/real_data/cifar10_cpu.py --out "$out" --methods Entropy Entropy-CB Entropy-CB-paper \
  --seeds 0 --cycles 2 --epochs 30 --initial-fraction 0.1 --budget 2500 --batch-size 128 --lr 0.1 \
  --lam-entropy auto --backbone resnet18_cifar --accelerator gpu --precision bf16-mixed \
  --jobs 3 --threads 4 --num-workers 4 --log-dir /tmp/cbal-gpu-logs
