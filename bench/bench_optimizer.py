"""AdamW update time: torch's default on this device against clipforge's ``create_optimizer``.

On CPU torch's default AdamW loops over parameters in Python; ``create_optimizer`` asks for the
fused kernel (one call per parameter, vectorised and threaded). Both are timed here on the same
model with the same gradients, and the ratio is printed.

    python bench/bench_optimizer.py [--models shapes-rn,ViT-B-32] [--steps 5]
"""

from __future__ import annotations

import argparse
import time

import torch


def time_steps(optimizer: torch.optim.Optimizer, steps: int) -> float:
    """Median seconds of one ``optimizer.step()`` after two untimed ones (state allocation)."""
    for _ in range(2):
        optimizer.step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    from clipforge import create_model
    from clipforge.train import create_optimizer
    from clipforge.train.config import OptimSection

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="shapes-rn,ViT-B-32")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = create_model(name)
        for param in model.parameters():
            param.grad = torch.randn_like(param) * 1e-3
        cfg = OptimSection(lr=1e-4)
        default = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        ours = create_optimizer(model, cfg)
        base, mine = time_steps(default, args.steps), time_steps(ours, args.steps)
        fused = ours.defaults.get("fused")
        print(
            f"{name}: torch default {base * 1e3:.1f} ms, create_optimizer (fused={fused}) "
            f"{mine * 1e3:.1f} ms per step: {base / mine:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
