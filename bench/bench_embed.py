"""Embedding throughput: ``clipforge.search.embed_collection`` against a plain loop.

Both embed the same folder of generated JPEGs (shapes-world scenes) with the same model,
batch size and precision. The plain loop is what a script would do: load an image,
preprocess it, and encode a batch once it is full, all in one process. ``embed_collection``
decodes in DataLoader workers while the model runs, and also writes the partitions, metadata
and stats. Times exclude model creation; random ViT-B-32 weights cost as much as trained ones.

    python bench/bench_embed.py [--images 160] [--workers 2] [--batch-size 32] [--precision fp32|bf16|amp_bf16|...]
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import clipforge
from clipforge.data.shapes import write_shapes
from clipforge.precision import PRECISIONS, resolve_precision
from clipforge.search.embed import embed_collection
from clipforge.transforms import image_transform, load_image


def plain_loop(model, paths: list[Path], batch_size: int, precision: str) -> float:
    """Images/s of load -> preprocess -> encode, one batch at a time, in this process, at the
    same precision as ``embed_collection`` (weights cast, or autocast)."""
    transform = image_transform(model.image_size)
    resolved = resolve_precision(precision, "cpu")
    model = copy.deepcopy(model).to(resolved.weight_dtype)
    started = time.perf_counter()
    with torch.inference_mode(), resolved.autocast():
        for start in range(0, len(paths), batch_size):
            pixels = torch.stack(
                [transform(load_image(p)) for p in paths[start : start + batch_size]]
            )
            F.normalize(model.encode_image(pixels.to(resolved.weight_dtype)).float(), dim=-1)
    return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--image-size", type=int, default=320, help="side of the generated JPEGs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_shapes(root / "data", args.images, format="csv", image_size=args.image_size)
        folder = root / "data" / "images"
        paths = sorted(folder.glob("*.jpg"))
        torch.manual_seed(0)
        model = clipforge.create_model(args.model).eval()
        pretrained = root / "model.safetensors"
        clipforge.save_model(model, pretrained)
        print(f"{args.model} on cpu ({torch.get_num_threads()} threads), {len(paths)} JPEGs of "
              f"{args.image_size}px, batch {args.batch_size}, {args.precision}")  # fmt: skip
        plain_loop(model, paths[: args.batch_size], args.batch_size, args.precision)  # warm-up
        plain = plain_loop(model, paths, args.batch_size, args.precision)
        print(f"plain loop:        {plain:7.1f} images/s")
        summary = embed_collection(
            [folder],
            root / "emb",
            model=args.model,
            pretrained=pretrained,
            batch_size=args.batch_size,
            num_workers=args.workers,
            precision=args.precision,
            device="cpu",
            progress=False,
        )
        embedded = summary["images_per_second"]
        print(f"embed_collection:  {embedded:7.1f} images/s  ({args.workers} workers, "
              f"{summary['images']} images written)")  # fmt: skip
        print(f"ratio:             {embedded / plain:7.2f}x")


if __name__ == "__main__":
    main()
