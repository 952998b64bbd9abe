"""Inference throughput of a CLIP model on this machine's CPU (or GPU with --device cuda).

Measures images/s and texts/s for fp32 and bf16 autocast at batch sizes 1 and 32, with texts of
realistic length (~15 tokens) and of full length (77 tokens), and prints the ratio of realistic
to full-length text throughput: clipforge cuts each text batch after its last end-of-text
token, so short captions should cost far less than the full context.

    python bench/bench_inference.py [--model ViT-B-32] [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

import torch

import clipforge
from clipforge.precision import resolve_precision

CAPTIONS = [
    "a photo of a large red star on the left of a small blue square",
    "two dogs playing with a frisbee on a sunny beach near the water",
    "a bowl of fresh fruit with apples, bananas and oranges on a table",
    "a man riding a bicycle down a busy city street at night",
]


def throughput(fn, batch: int, seconds: float) -> float:
    """Items per second of ``fn`` after a warm-up, timed over at least ``seconds``."""
    fn()
    fn()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or runs < 3:
        fn()
        runs += 1
    return runs * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batches", default="1,32")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = clipforge.create_model(args.model, device=args.device).eval()
    tokenizer = clipforge.get_tokenizer(model)
    size = model.image_size
    print(f"model {args.model} on {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip

    rows = []
    for precision in ("fp32", "amp_bf16"):
        autocast = resolve_precision(precision, args.device).autocast()
        for batch in (int(b) for b in args.batches.split(",")):
            pixels = torch.randn(batch, 3, size, size, device=args.device)
            short = tokenizer([CAPTIONS[i % len(CAPTIONS)] for i in range(batch)])
            full = torch.randint(1, 49000, (batch, model.context_length))
            full[:, 0], full[:, -1] = 49406, 49407
            short, full = short.to(args.device), full.to(args.device)
            real_len = float((short.argmax(-1) + 1).float().mean())
            with torch.inference_mode(), autocast:
                images = throughput(lambda p=pixels: model.encode_image(p), batch, args.seconds)
                texts = throughput(lambda t=short: model.encode_text(t), batch, args.seconds)
                texts_full = throughput(lambda t=full: model.encode_text(t), batch, args.seconds)
            rows.append((precision, batch, images, texts, texts_full, real_len))

    print(f"{'precision':>9} {'batch':>5} {'images/s':>10} {'texts/s (~15 tok)':>18} "
          f"{'texts/s (77 tok)':>17} {'ratio':>6}")  # fmt: skip
    for precision, batch, images, texts, texts_full, real_len in rows:
        print(f"{precision:>9} {batch:>5} {images:>10.1f} {texts:>18.1f} {texts_full:>17.1f} "
              f"{texts / texts_full:>5.2f}x   (mean real length {real_len:.1f} tokens)")  # fmt: skip


if __name__ == "__main__":
    main()
