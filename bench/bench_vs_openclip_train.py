"""Training throughput of clipforge against OpenCLIP's own trainer: same machine, model, batch, data.

Each side runs in a fresh subprocess (its peak RSS is its own; imports do not interfere) with the
same torch thread count, the same warm-up and timed steps, and the same batches cycled in the same
order. One step is forward, contrastive loss, backward and an AdamW update, driven by each
project's real training loop:

* OpenCLIP 3.3.0: ``open_clip_train.train.train_one_epoch`` itself, with ``args`` from
  ``open_clip_train.params.parse_args`` completed by ``init_distributed_device`` as its ``main``
  does; the model from ``open_clip.create_model`` (``output_dict=True``), the loss from
  ``open_clip.create_loss(args)``, the ``cosine_lr`` schedule, and AdamW grouped as its ``main``
  groups parameters (no decay for tensors under 2-D and names with ``bn``, ``ln``, ``bias``,
  ``logit_scale``).
* clipforge: ``clipforge.train.train`` (the loop ``fit`` runs) on a ``StepBatches`` source, with
  the model from ``clipforge.train.build.build_model``.

Both get the same pre-made pixel tensors (B, 3, H, W), already normalised, and the same captions
(10-20 words) tokenised by each project's own tokenizer (the ids are checked to be identical).
OpenCLIP's package imports torchvision, which cannot be installed beside this torch; its image
transforms are never used here, so a stub ``torchvision`` (only the names the import chain needs;
each stubbed class raises if built) is put in ``sys.modules`` before ``import open_clip``, and
``transformers`` is hidden so OpenCLIP's optional Hugging Face text tower does not import it.

Like for like: clipforge starts from OpenCLIP's initial weights (the same state-dict layout), so
the first step's loss must agree on both sides (to 1e-4 in fp32); the script prints the
difference and fails if it does not. A step's time runs from one batch handout to the next, so it
includes each loop's own bookkeeping (schedule, logging); warm-up steps are discarded.

    python bench/bench_vs_openclip_train.py --model ViT-B-32 --batch 32 --warmup 2 --steps 10
    python bench/bench_vs_openclip_train.py --model tiny --batch 16 --warmup 2 --steps 5  # smoke

``--model`` takes a clipforge config name; OpenCLIP uses its own config of that name when it has
one (ViT-B-32), otherwise clipforge's config registered with ``open_clip.add_model_config``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import torch

OPENCLIP_SIDE = "OpenCLIP 3.3.0 train_one_epoch"
CLIPFORGE_SIDE = "clipforge train()"
PRECISIONS = {"fp32": "fp32", "bf16": "amp_bf16"}  # --precision -> both trainers' name
PARITY_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2}  # bf16 autocast rounds differently per kernel
MAX_DISTINCT_BATCHES = 4
# The same optimiser and schedule on both sides (OpenCLIP's ViT defaults, clipforge's defaults).
HPARAMS = {"lr": 5e-4, "wd": 0.2, "beta1": 0.9, "beta2": 0.98, "eps": 1e-6, "lr_warmup": 100}
LOG_EVERY = 1  # both loops log every step: clipforge's log gives its first loss

SUBJECTS = [
    "a young woman in a yellow raincoat",
    "two brown dogs with red collars",
    "an old fisherman wearing a wool hat",
    "a small child holding a blue balloon",
    "a group of cyclists in bright jerseys",
    "a grey cat with green eyes",
    "three students carrying heavy backpacks",
    "a street musician with a battered guitar",
]
ACTIONS = [
    "walking slowly along",
    "resting quietly beside",
    "running happily across",
    "waiting patiently near",
    "looking out over",
    "standing together in front of",
]
PLACES = [
    "the harbour at sunset",
    "a busy market street in the rain",
    "an empty beach on a cloudy morning",
    "the old stone bridge in winter",
    "a quiet park full of autumn leaves",
    "the train station late at night",
]
TORCHVISION_STUB = {  # module -> names that OpenCLIP's import chain takes from it
    "torchvision": [],
    "torchvision.transforms": [
        "CenterCrop",
        "ColorJitter",
        "Compose",
        "Grayscale",
        "Normalize",
        "RandomResizedCrop",
        "Resize",
        "ToTensor",
    ],
    "torchvision.transforms.functional": [],
    "torchvision.ops": [],
    "torchvision.ops.misc": ["FrozenBatchNorm2d"],
}


def make_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` captions of 10-20 words from subject x action x place, in a seeded order."""
    rng = random.Random(seed)
    captions = [
        f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)} {rng.choice(PLACES)}" for _ in range(n)
    ]
    for caption in captions:
        if not 10 <= len(caption.split()) <= 20:
            raise ValueError(f"caption {caption!r} is not 10-20 words")
    return captions


def write_inputs(work: Path, model_name: str, batch: int, total_steps: int) -> None:
    """The batches both sides train on: normalised pixels (N, B, 3, S, S) and N x B captions."""
    from clipforge.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    from clipforge.models import get_model_config

    size = get_model_config(model_name).vision_cfg.image_size
    n = min(MAX_DISTINCT_BATCHES, total_steps)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, batch, 3, size, size), generator=generator)
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 1, 3, 1, 1)
    pixels = (images.float() / 255 - mean) / std
    torch.save({"pixels": pixels, "captions": make_captions(n * batch)}, work / "inputs.pt")


def load_inputs(work: Path) -> tuple[torch.Tensor, list[str]]:
    data = torch.load(work / "inputs.pt", weights_only=True)
    return data["pixels"], data["captions"]


class StepClock:
    """Stamps ``time.perf_counter()`` at every batch handout; step k lasts stamp k to stamp k+1."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def tick(self) -> None:
        self.stamps.append(time.perf_counter())

    def summary(self, warmup: int, batch: int) -> dict[str, float]:
        timed = self.stamps[warmup:]
        if len(timed) < 2:
            raise RuntimeError(f"{len(self.stamps)} stamps: the loop ended before any timed step")
        durations = [b - a for a, b in zip(timed, timed[1:], strict=False)]
        return {
            "samples_per_s": batch * len(durations) / (timed[-1] - timed[0]),
            "median_step_s": statistics.median(durations),
            "timed_steps": len(durations),
        }


class FirstLoss:
    """Wraps OpenCLIP's loss and keeps its first value (it returns a dict of loss tensors)."""

    def __init__(self, loss_fn) -> None:
        self.loss_fn, self.value = loss_fn, None

    def __call__(self, *args, **kwargs):
        out = self.loss_fn(*args, **kwargs)
        if self.value is None:
            self.value = float(sum(out.values()))
        return out


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def install_torchvision_stub() -> None:
    """Let ``import open_clip`` succeed without torchvision; every stubbed class raises if built."""

    def unavailable(name: str) -> type:
        def fail(self, *args, **kwargs):
            raise RuntimeError(f"torchvision stub: {name} is not available in this benchmark")

        return type(name.rpartition(".")[2], (), {"__init__": fail})

    for module_name, names in TORCHVISION_STUB.items():
        module = types.ModuleType(module_name)
        module.__path__ = []
        for name in names:
            setattr(module, name, unavailable(f"{module_name}.{name}"))
        sys.modules[module_name] = module
    # An enum read at import time (a default argument): plain string members suffice.
    modes = {m: m.lower() for m in ("NEAREST", "BILINEAR", "BICUBIC")}
    sys.modules["torchvision.transforms"].InterpolationMode = type("InterpolationMode", (), modes)
    sys.modules["transformers"] = None  # OpenCLIP's optional HF tower: import fails -> skipped


def openclip_model_name(open_clip, name: str, work: Path) -> str:
    """OpenCLIP's own config ``name`` if it has one, else clipforge's registered with it."""
    if name in open_clip.list_models():
        return name
    from clipforge.models import get_model_config

    path = work / f"clipforge-{name}.json"
    path.write_text(json.dumps(get_model_config(name).to_dict()))
    open_clip.add_model_config(path)
    return path.stem


def openclip_optimizer(model: torch.nn.Module, args) -> torch.optim.AdamW:
    """AdamW grouped as OpenCLIP's ``main`` groups it (its decay rule, its hyperparameters)."""

    def no_decay(name: str, param: torch.nn.Parameter) -> bool:
        return param.ndim < 2 or any(key in name for key in ("bn", "ln", "bias", "logit_scale"))

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": args.wd},
    ]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)


class OpenCLIPTrainData:
    """What ``train_one_epoch`` reads from ``data['train']``: a dataloader and ``set_epoch``."""

    def __init__(self, batches: list, steps: int, clock: StepClock) -> None:
        self.dataloader = self
        self.batches, self.clock = batches, clock
        self.num_batches = steps
        self.num_samples = steps * batches[0][0].shape[0]

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        for step in range(self.num_batches):
            self.clock.tick()
            yield self.batches[step % len(self.batches)]
        self.clock.tick()  # the loop asks for the next batch: the last step is done


def run_openclip(opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    install_torchvision_stub()
    import open_clip
    from open_clip_train.distributed import init_distributed_device
    from open_clip_train.params import parse_args
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch

    name = openclip_model_name(open_clip, opts.model, work)
    total = opts.warmup + opts.steps
    flags = {
        "model": name,
        "batch-size": opts.batch,
        "device": "cpu",
        "precision": PRECISIONS[opts.precision],
        "epochs": 1,
        "log-every-n-steps": LOG_EVERY,
        **{key: HPARAMS[key] for key in ("lr", "wd", "beta1", "beta2", "eps")},
        "warmup": HPARAMS["lr_warmup"],
    }
    args = parse_args([item for key, value in flags.items() for item in (f"--{key}", str(value))])
    init_distributed_device(args)
    args.distill = args.distill_model is not None and args.distill_pretrained is not None
    args.wandb = False  # main() derives both from other flags
    torch.manual_seed(args.seed)
    model = open_clip.create_model(
        name, precision=args.precision, device=args.device, output_dict=True
    )
    torch.save(model.state_dict(), work / "init.pt")
    pixels, captions = load_inputs(work)
    tokens = open_clip.get_tokenizer(name)(captions).view(pixels.shape[0], opts.batch, -1)
    torch.save(tokens, work / "openclip_tokens.pt")
    clock = StepClock()
    data = {"train": OpenCLIPTrainData(list(zip(pixels, tokens, strict=True)), total, clock)}
    optimizer = openclip_optimizer(model, args)
    scheduler = cosine_lr(optimizer, args.lr, args.warmup, total)
    loss = FirstLoss(open_clip.create_loss(args))
    train_one_epoch(model, data, loss, 0, optimizer, None, scheduler, None, args, tb_writer=None)
    return {
        "openclip_model": name,
        "first_loss": loss.value,
        "peak_rss_gib": peak_rss_gib(),
        **clock.summary(opts.warmup, opts.batch),
    }


def run_clipforge(opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    from clipforge import get_tokenizer
    from clipforge.train import TrainConfig, train
    from clipforge.train.build import build_model

    h = HPARAMS
    cfg = TrainConfig.from_dict(
        {
            "model": {"name": opts.model},
            "data": {"batch_size": opts.batch},
            "optim": {
                "lr": h["lr"],
                "weight_decay": h["wd"],
                "beta1": h["beta1"],
                "beta2": h["beta2"],
                "eps": h["eps"],
                "warmup_steps": h["lr_warmup"],
                "schedule": "cosine",
            },
            "run": {
                "out_dir": str(work / "clipforge_run"),
                "steps": opts.warmup + opts.steps,
                "precision": PRECISIONS[opts.precision],
                "device": "cpu",
                "log_every": LOG_EVERY,
                "checkpoint_every": 0,
                "progress": False,
            },
        },
        source="bench",
    )
    model = build_model(cfg, torch.device("cpu"))
    model.load_state_dict(torch.load(work / "init.pt", weights_only=True, mmap=True))
    pixels, captions = load_inputs(work)
    tokens = get_tokenizer(model)(captions).view(pixels.shape[0], opts.batch, -1)
    same_tokens = torch.equal(tokens, torch.load(work / "openclip_tokens.pt", weights_only=True))
    pool = list(zip(pixels, tokens, strict=True))
    clock = StepClock()

    def batches(start_step: int):
        step = start_step
        while True:  # the loop takes one batch past its last step, which stamps that step's end
            clock.tick()
            yield pool[step % len(pool)]
            step += 1

    result = train(cfg, batches, model=model)  # logs every step: history[0] is step 1
    return {
        "first_loss": result.history[0]["loss"],
        "tokens_identical": same_tokens,
        "peak_rss_gib": peak_rss_gib(),
        **clock.summary(opts.warmup, opts.batch),
    }


def run_side(side: str, opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Run one side in a fresh interpreter; its result is the last line of its stdout (JSON)."""
    flags = {"side": side, "work": work, "model": opts.model, "batch": opts.batch,
             "steps": opts.steps, "warmup": opts.warmup, "precision": opts.precision,
             "threads": opts.threads}  # fmt: skip
    command = [sys.executable, __file__, *(x for k, v in flags.items() for x in (f"--{k}", str(v)))]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the {side} side failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(opts: argparse.Namespace, oc: dict, cf: dict, loads: tuple[float, float]) -> bool:
    """Print the comparison; return whether first losses (within tolerance) and token ids agree."""
    print(
        f"model {opts.model} (OpenCLIP config {oc['openclip_model']!r}), batch {opts.batch}, "
        f"{opts.precision}, {opts.warmup} warm-up + {opts.steps} timed steps, "
        f"{opts.threads} threads, torch {torch.__version__}, "
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}, "
        f"1-min load average {loads[0]:.1f} before / {loads[1]:.1f} after"
    )
    print(
        "OpenCLIP runs with a stub torchvision (import only): its image transforms are unused, "
        "both sides train on the same pre-made pixel tensors."
    )
    print("| trainer | samples/s | median step | peak RSS | first loss |\n|---|---|---|---|---|")
    for name, r in ((OPENCLIP_SIDE, oc), (CLIPFORGE_SIDE, cf)):
        print(
            f"| {name} | {r['samples_per_s']:.2f} | {r['median_step_s']:.3f} s | "
            f"{r['peak_rss_gib']:.2f} GiB | {r['first_loss']:.6f} |"
        )
    ratio = cf["samples_per_s"] / oc["samples_per_s"]
    diff, tol = abs(cf["first_loss"] - oc["first_loss"]), PARITY_TOLERANCE[opts.precision]
    ok = diff <= tol
    print(f"clipforge / OpenCLIP throughput: {ratio:.2f}x")
    print(
        f"first-step loss difference {diff:.2e} (tolerance {tol:.0e}): "
        f"{'ok' if ok else 'MISMATCH'}; token ids identical: {cf['tokens_identical']}"
    )
    return ok and cf["tokens_identical"]


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("--model", default="ViT-B-32", help="clipforge config name")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternating runs per side; the fastest is reported"
    )
    parser.add_argument("--side", choices=("openclip", "clipforge"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    for key in ("batch", "steps", "threads", "rounds"):
        if getattr(opts, key) < 1:
            parser.error(f"--{key}={getattr(opts, key)} must be >= 1")
    if opts.warmup < 0:
        parser.error(f"--warmup={opts.warmup} must be >= 0")
    from clipforge.models import list_models

    if opts.model not in list_models():
        parser.error(f"--model {opts.model!r} is not a clipforge config; known: {list_models()}")
    return opts


def main() -> None:
    opts = parse_options()
    if opts.side:
        torch.set_num_threads(opts.threads)
        run = run_openclip if opts.side == "openclip" else run_clipforge
        print(json.dumps(run(opts, opts.work)))
        return
    with tempfile.TemporaryDirectory(prefix="bench_vs_openclip_") as tmp:
        work = Path(tmp)
        write_inputs(work, opts.model, opts.batch, opts.warmup + opts.steps)
        load_before = os.getloadavg()[0]
        rounds: dict[str, list[dict]] = {"openclip": [], "clipforge": []}
        for _ in range(opts.rounds):  # alternate, so that a change of load hits both sides
            for side, results in rounds.items():  # OpenCLIP first: it writes the initial weights
                results.append(run_side(side, opts, work))
    if opts.rounds > 1:
        for side, results in rounds.items():
            print(f"{side} samples/s per round: {[round(r['samples_per_s'], 2) for r in results]}")
    oc, cf = (max(rounds[side], key=lambda r: r["samples_per_s"]) for side in rounds)
    if not report(opts, oc, cf, (load_before, os.getloadavg()[0])):
        raise SystemExit("the two sides did not compute the same first step: not like for like")


if __name__ == "__main__":
    main()
