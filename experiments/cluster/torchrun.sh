#!/usr/bin/env bash
# Multi-node training without SLURM: run this on every node with its NODE_RANK (0 .. NNODES-1).
#   MASTER_ADDR=10.0.0.1 NNODES=2 NODE_RANK=0 GPUS=4 experiments/cluster/torchrun.sh train wavenet --params experiments/paper.yaml
# The profile must say num_nodes = NNODES, devices = GPUS, strategy: ddp. Tested on loopback in
# tests/test_ddp.py (2 "nodes" x 1 CPU process, gloo).
set -euo pipefail
: "${MASTER_ADDR:?address of node 0}" "${NNODES:?number of nodes}" "${NODE_RANK:?this node's rank}"
exec .venv/bin/torchrun --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="${GPUS:-1}" \
    --master_addr="$MASTER_ADDR" --master_port="${MASTER_PORT:-29500}" --no-python .venv/bin/gwpe "$@" --resume
