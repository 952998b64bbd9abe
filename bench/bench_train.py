"""Training throughput and peak memory, against this machine's own matmul throughput.

For each case (model, batch, precision) one training step (forward, backward, AdamW) is timed
over realistic captions, its FLOPs are counted with torch's FlopCounterMode, and the achieved
FLOP/s is reported as a fraction of a plain large matmul's FLOP/s in the same precision,
measured in the same run. Each case runs in a fresh process so its peak RSS is its own.

    python bench/bench_train.py [--seconds 20] [--cases vit-b-32-bf16,vit-b-32-fp32,demo-fp32]
    python bench/bench_train.py --single-step --cases vit-b-32-bf16

``--single-step`` times the one step whose FLOPs are counted, with no warm-up step and no timing
loop: for cases whose steps take minutes, such as bf16 on a CPU that only emulates it, where
four steps would take an hour and one step's setup cost is lost in the noise.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

CASES = {
    "vit-b-32-bf16": ("ViT-B-32", 32, "amp_bf16"),
    "vit-b-32-fp32": ("ViT-B-32", 32, "fp32"),
    "demo-fp32": ("shapes-rn", 256, "fp32"),
}
CAPTIONS = [
    "a photo of a large red star on the left of a small blue square",
    "two dogs playing with a frisbee on a sunny beach near the water",
    "a bowl of fresh fruit with apples, bananas and oranges on a table",
    "a man riding a bicycle down a busy city street at night",
]


def matmul_flops(
    dtype: torch.dtype, windows: int = 5, seconds: float = 1.0, n: int = 2048
) -> float:
    """The machine's matmul FLOP/s in ``dtype``: the best of ``windows`` timing windows, so that
    a moment of contention on a shared machine does not pass for the machine's speed."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(windows):
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            runs += 1
        best = max(best, 2 * n**3 * runs / (time.perf_counter() - start))
    return best


def run_case(name: str, seconds: float, single_step: bool = False) -> dict:
    import clipforge
    from clipforge.losses import create_loss
    from clipforge.precision import resolve_precision
    from clipforge.train import StepContext, TrainState, create_optimizer, train_step
    from clipforge.train.config import OptimSection

    model_name, batch, precision = CASES[name]
    torch.manual_seed(0)
    model = clipforge.create_model(model_name)
    if model.config.vision_cfg.is_resnet:
        model = model.to(memory_format=torch.channels_last)
    tokenizer = clipforge.get_tokenizer(model)
    size = model.image_size
    pixels = torch.randn(batch, 3, size, size)
    tokens = tokenizer([CAPTIONS[i % len(CAPTIONS)] for i in range(batch)])
    ctx = StepContext(create_loss("clip"), resolve_precision(precision))
    bf16 = ctx.precision.autocast_dtype == torch.bfloat16
    state = TrainState(model, create_optimizer(model, OptimSection(lr=1e-4)))

    def step() -> None:
        train_step(state, (pixels, tokens), ctx)

    from torch.utils.flop_counter import FlopCounterMode

    if not single_step:
        step()
    start = time.perf_counter()
    with FlopCounterMode(display=False) as counter:
        step()
    elapsed = time.perf_counter() - start
    flops = counter.get_total_flops()
    if not single_step:
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or runs < 2:
            step()
            runs += 1
        elapsed = (time.perf_counter() - start) / runs
    # One window in --single-step mode: a bf16 2048² matmul alone can take a minute where bf16
    # is emulated, and five windows would add minutes to a one-step measurement.
    peak = matmul_flops(torch.bfloat16 if bf16 else torch.float32, windows=1 if single_step else 5)
    return {
        "case": name,
        "samples_per_s": batch / elapsed,
        "step_s": elapsed,
        "model_gflop_per_step": flops / 1e9,
        "achieved_gflops": flops / elapsed / 1e9,
        "matmul_gflops": peak / 1e9,
        "fraction_of_matmul": flops / elapsed / peak,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument(
        "--single-step",
        action="store_true",
        help="time only the FLOP-counted step (for cases with minute-long steps)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, args.seconds, args.single_step)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    header = (
        "case",
        "samples/s",
        "GFLOP/step",
        "GFLOP/s",
        "matmul GFLOP/s",
        "fraction",
        "peak RSS",
    )
    print("{:>15} {:>10} {:>11} {:>9} {:>15} {:>9} {:>9}".format(*header))
    for name in args.cases.split(","):
        command = [sys.executable, __file__, "--one", name, "--seconds", str(args.seconds)]
        if args.single_step:
            command.append("--single-step")
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['case']:>15} {r['samples_per_s']:>10.1f} {r['model_gflop_per_step']:>11.1f} "
              f"{r['achieved_gflops']:>9.1f} {r['matmul_gflops']:>15.1f} "
              f"{r['fraction_of_matmul']:>8.1%} {r['peak_rss_gib']:>7.2f}GiB")  # fmt: skip


if __name__ == "__main__":
    main()
