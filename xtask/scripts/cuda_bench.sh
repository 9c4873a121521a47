#!/usr/bin/env bash
# SSL step throughput on a CUDA host: rsim (built elsewhere against torch 2.11, carried as a binary)
# vs the same step in PyTorch, same card, same run. Usage: cuda_bench.sh RSIM_BINARY [batch] [steps]
set -u
rsim="$1"; batch="${2:-256}"; steps="${3:-20}"
torchlib=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torchlib:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.version.cuda)'
"$rsim" --version || true
printf '%-10s %-9s %-5s %12s %12s %7s\n' arch method amp rsim_img_s torch_img_s ratio
for arch in resnet18 mobilenet_v2; do
  for m in simclr moco byol; do
    for amp in none fp16; do
      r=$(timeout 120 "$rsim" bench step --device cuda --arch "$arch" --method "$m" --size 64 --batch "$batch" --steps "$steps" --amp "$amp" 2>&1 | tail -1 | awk '{print $1}')
      p=$(timeout 120 python3 xtask/scripts/pytorch_ssl_step.py "$m" "$arch" 64 "$batch" "$steps" cuda "$amp" 2>&1 | tail -1 | awk '{print $1}')
      ratio=$(python3 -c "print(f'{float(\"$r\")/float(\"$p\"):.2f}')" 2>/dev/null || echo n/a)
      printf '%-10s %-9s %-5s %12s %12s %7s\n' "$arch" "$m" "$amp" "$r" "$p" "$ratio"
    done
  done
done
