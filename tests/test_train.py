"""The trainer: config validation, schedule, weight decay groups, accumulation, exact resume."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import clipforge
from clipforge.data.shapes import ShapesWorld
from clipforge.losses import create_loss
from clipforge.precision import resolve_precision
from clipforge.train import (
    StepContext,
    TensorBatches,
    TrainConfig,
    TrainConfigError,
    TrainState,
    create_optimizer,
    load_checkpoint,
    load_train_config,
    lr_at,
    save_checkpoint,
    train,
    train_step,
)
from clipforge.train.build import build_model
from clipforge.train.config import OptimSection
from clipforge.train.data import render_shapes

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "width": 32, "heads": 2, "layers": 2},
}


def synthetic_batches(batch_size: int = 8, n: int = 64, seed: int = 0) -> TensorBatches:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    tokens = torch.zeros(n, 16, dtype=torch.long)
    tokens[:, 0] = 49406
    tokens[:, 1:5] = torch.randint(1, 1000, (n, 4), generator=generator)
    tokens[:, 5] = 49407
    return TensorBatches(images, tokens, batch_size=batch_size, seed=seed)


def config(tmp_path: Path, **overrides: str) -> TrainConfig:
    model_file = tmp_path / "tiny.json"
    model_file.write_text(json.dumps(TINY))
    sets = [f"model.name={model_file}", f"run.out_dir={tmp_path / 'run'}", "run.steps=6",
            "run.checkpoint_every=3", "run.log_every=1", "run.progress=false",
            "run.precision=fp32", "optim.warmup_steps=2", "data.batch_size=8"]  # fmt: skip
    sets += [f"{k}={v}" for k, v in overrides.items()]
    return load_train_config(None, sets)


def test_config_rejects_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match="unknown key 'optim.lrr'"):
        TrainConfig().with_overrides(["optim.lrr=1"])
    with pytest.raises(TrainConfigError, match=r"optim.lr=-1.0 must be > 0"):
        TrainConfig().with_overrides(["optim.lr=-1"])
    with pytest.raises(TrainConfigError, match="run.precision='fp8'"):
        TrainConfig().with_overrides(["run.precision=fp8"])
    with pytest.raises(TrainConfigError, match="expected section.key=value"):
        TrainConfig().with_overrides(["steps=3"])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: 1e-3\n  colour: red\n")
    with pytest.raises(TrainConfigError, match=r"r.yaml: optim: unknown key\(s\) \['colour'\]"):
        load_train_config(recipe)
    recipe.write_text("run: [1, 2\n")
    with pytest.raises(TrainConfigError, match="not valid YAML"):
        load_train_config(recipe)
    with pytest.raises(TrainConfigError, match="does not exist"):
        load_train_config(tmp_path / "missing.yaml")
    with pytest.raises(TrainConfigError, match="data.batch_size='many'"):
        TrainConfig().with_overrides(["data.batch_size=many"])
    with pytest.raises(TrainConfigError, match="model.init_temperature=1.5 not in"):
        TrainConfig().with_overrides(["model.init_temperature=1.5"])
    with pytest.raises(TrainConfigError, match="captions_per_sample=0 must be > 0"):
        TrainConfig().with_overrides(["data.captions_per_sample=0"])


@pytest.mark.parametrize(
    ("loss", "key", "value"),
    [
        ("clip", "local_loss", True),
        ("clip", "label_smoothing", 0.1),
        ("distill", "label_smoothing", 0.1),
        ("cloob", "hopfield_beta", 4.0),
        ("distill", "distill_weight", 0.5),
        ("distill", "distill_temperature", 2.0),
    ],
)
def test_every_loss_option_is_reachable_from_set(loss: str, key: str, value) -> None:
    sets = [f"loss.name={loss}", f"loss.{key}={value}"]
    if loss == "distill":
        sets.append("loss.teacher=tiny-rn")
    cfg = TrainConfig().with_overrides(sets)
    assert cfg.loss.options() == {key: value}
    create_loss(cfg.loss.name, **cfg.loss.options())  # the loss takes what the config holds


def test_loss_section_carries_every_option_of_every_loss() -> None:
    """The config's loss keys are read from the losses: a new loss option needs a config key."""
    from clipforge.losses import loss_names, loss_options
    from clipforge.train.config import LossSection

    options = {key for name in loss_names() for key in loss_options(name)}
    assert options == {"local_loss", "label_smoothing", "hopfield_beta", "distill_weight",
                       "distill_temperature"}  # fmt: skip
    assert options <= set(LossSection.__dataclass_fields__)


@pytest.mark.parametrize(
    ("loss", "key", "value"),
    [
        ("clip", "hopfield_beta", 4.0),
        ("siglip", "label_smoothing", 0.1),
        ("infoloob", "local_loss", True),
        ("cloob", "distill_weight", 0.5),
        ("siglip", "distill_temperature", 2.0),
    ],
)
def test_a_loss_option_for_another_loss_is_an_error_naming_the_key(
    loss: str, key: str, value
) -> None:
    with pytest.raises(TrainConfigError, match=rf"loss\.{key}=.*loss\.name='{loss}'"):
        TrainConfig().with_overrides([f"loss.name={loss}", f"loss.{key}={value}"])


def test_loss_config_names_bad_values() -> None:
    with pytest.raises(TrainConfigError, match="loss.name='clap'"):
        TrainConfig().with_overrides(["loss.name=clap"])
    with pytest.raises(TrainConfigError, match="loss.hopfield_beta=0.0 must be > 0"):
        TrainConfig().with_overrides(["loss.name=cloob", "loss.hopfield_beta=0"])
    with pytest.raises(TrainConfigError, match="loss.teacher=''"):
        TrainConfig().with_overrides(["loss.name=distill"])
    with pytest.raises(TrainConfigError, match="loss.teacher='tiny-rn'"):
        TrainConfig().with_overrides(["loss.teacher=tiny-rn"])


def test_run_precision_speaks_the_one_vocabulary() -> None:
    with pytest.raises(TrainConfigError, match="run.precision='amp'.*'amp_fp16'"):
        TrainConfig().with_overrides(["run.precision=amp"])
    with pytest.raises(TrainConfigError, match="run.precision='bf16' is not allowed"):
        TrainConfig().with_overrides(["run.precision=bf16"])  # cast weights cannot train
    assert TrainConfig().with_overrides(["run.precision=auto"]).run.precision == "auto"


def test_auto_precision_trains_in_fp32_on_a_cpu_without_native_bf16(
    tmp_path: Path, monkeypatch
) -> None:
    import clipforge.precision as precision

    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2"}))
    (tmp_path / "auto").mkdir()
    (tmp_path / "fp32").mkdir()
    sets = {"run.steps": 2, "run.checkpoint_every": 0}
    auto = train(
        config(tmp_path / "auto", **sets, **{"run.precision": "auto"}), synthetic_batches()
    )
    fp32 = train(config(tmp_path / "fp32", **sets), synthetic_batches())
    assert [h["loss"] for h in auto.history] == [h["loss"] for h in fp32.history]


def test_train_state_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = clipforge.create_model(TINY)
    state = TrainState(model, create_optimizer(model, OptimSection()),
                       torch.amp.GradScaler("cpu", init_scale=2.0**7))  # fmt: skip
    batch = next(synthetic_batches()(0))
    train_step(state, batch, StepContext(create_loss("clip"), resolve_precision("amp_fp16")))
    weights = save_checkpoint(tmp_path, state)
    expected_draw = torch.rand(3)

    torch.manual_seed(1)
    fresh_model = clipforge.create_model(TINY)
    fresh = TrainState(fresh_model, create_optimizer(fresh_model, OptimSection()),
                       torch.amp.GradScaler("cpu"))  # fmt: skip
    load_checkpoint(weights, fresh)
    assert fresh.step == 1
    torch.testing.assert_close(fresh_model.state_dict(), model.state_dict())
    torch.testing.assert_close(fresh.optimizer.state_dict(), state.optimizer.state_dict())
    assert fresh.scaler.state_dict() == state.scaler.state_dict()
    torch.testing.assert_close(torch.rand(3), expected_draw)  # the RNG continues where it was


def test_the_step_sets_the_schedules_learning_rate() -> None:
    torch.manual_seed(0)
    model = clipforge.create_model(TINY)
    cfg = OptimSection(lr=1e-3, warmup_steps=4)
    state = TrainState(model, create_optimizer(model, cfg), step=2)
    ctx = StepContext(create_loss("clip"), lr_at=lambda step: lr_at(step, cfg, 10))
    metrics = train_step(state, next(synthetic_batches()(0)), ctx)
    assert state.step == 3
    assert metrics["lr"] == pytest.approx(1e-3 * 3 / 4)
    assert all(g["lr"] == pytest.approx(1e-3 * 3 / 4) for g in state.optimizer.param_groups)


def test_init_temperature_sets_the_starting_logit_scale(tmp_path: Path) -> None:
    cfg = config(tmp_path, **{"model.init_temperature": "0.04"})
    model = build_model(cfg, torch.device("cpu"))
    assert model.logit_scale.exp().item() == pytest.approx(25.0)
    default = build_model(config(tmp_path), torch.device("cpu"))
    assert default.logit_scale.exp().item() == pytest.approx(1 / 0.07)


def test_schedule_is_warmup_then_cosine() -> None:
    cfg = OptimSection(lr=1.0, warmup_steps=10, schedule="cosine")
    assert lr_at(0, cfg, 110) == pytest.approx(0.1)
    assert lr_at(9, cfg, 110) == pytest.approx(1.0)
    assert lr_at(60, cfg, 110) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(110, cfg, 110) == pytest.approx(0.0)
    assert lr_at(50, OptimSection(lr=1.0, warmup_steps=10, schedule="constant"), 110) == 1.0


def test_weight_decay_skips_biases_norms_embeddings_and_temperature() -> None:
    model = clipforge.create_model(TINY)
    optimizer = create_optimizer(model, OptimSection(weight_decay=0.1))
    decayed = {id(p) for p in optimizer.param_groups[0]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in names
    assert "visual.conv1.weight" in names and "text_projection" in names
    for excluded in ("logit_scale", "token_embedding.weight", "positional_embedding",
                     "visual.class_embedding", "ln_final.weight", "visual.ln_pre.bias",
                     "transformer.resblocks.0.mlp.c_fc.bias"):  # fmt: skip
        assert excluded not in names
    assert optimizer.param_groups[1]["weight_decay"] == 0.0


def _adamw_after_steps(optimizer_cfg: OptimSection, steps: int = 3):
    torch.manual_seed(0)
    model = clipforge.create_model(TINY)
    optimizer = create_optimizer(model, optimizer_cfg)
    for step in range(steps):
        generator = torch.Generator().manual_seed(step)
        for param in model.parameters():
            param.grad = torch.randn(param.shape, generator=generator) * 1e-2
        optimizer.step()
    return optimizer, {n: p.detach().clone() for n, p in model.named_parameters()}


def test_adamw_runs_fused_on_cpu_and_updates_as_the_unfused_one() -> None:
    cfg = OptimSection(lr=1e-2, weight_decay=0.1)
    fused, fused_params = _adamw_after_steps(cfg)
    plain, plain_params = _adamw_after_steps(OptimSection(lr=1e-2, weight_decay=0.1, fused=False))
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    torch.manual_seed(0)
    start = dict(clipforge.create_model(TINY).named_parameters())
    for name, value in plain_params.items():
        assert not torch.equal(value, start[name]), f"{name} did not move"
        torch.testing.assert_close(fused_params[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_adamw_falls_back_when_torch_has_no_fused_kernel(monkeypatch, caplog) -> None:
    real = torch.optim.AdamW

    def no_fused(params, *args, fused=None, **kwargs):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be on a supported device")
        return real(params, *args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", no_fused)
    with caplog.at_level("INFO", logger="clipforge.train.optim"):
        optimizer = create_optimizer(clipforge.create_model(TINY), OptimSection())
    assert not optimizer.defaults["fused"]
    assert "fused AdamW unavailable" in caplog.text


def test_accumulation_equals_full_batch_gradient() -> None:
    """Cached-feature accumulation keeps all negatives: same gradients as one big batch."""
    batch = next(synthetic_batches(batch_size=8)(0))
    grads = []
    for parts in (1, 4):
        torch.manual_seed(0)
        model = clipforge.create_model(TINY)
        state = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.0))
        train_step(state, batch, StepContext(create_loss("clip"), accum_steps=parts))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_several_captions_per_image_are_paired_one_per_epoch() -> None:
    """With (N, K, L) tokens every batch row keeps its own image's captions, the caption drawn
    for a sample changes between epochs, and a step's batch is a pure function of the step."""
    n, k, batch_size = 16, 3, 8
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    tokens = torch.zeros(n, k, 6, dtype=torch.long)
    tokens[:, :, 1] = torch.arange(n).view(n, 1) * 10 + torch.arange(k)  # image * 10 + variant
    batches = TensorBatches(images, tokens, batch_size=batch_size, seed=3)
    seen: dict[int, set[int]] = {i: set() for i in range(n)}
    stream = batches(0)
    for step in range(24):  # 12 epochs
        pixels, ids = next(stream)
        assert ids.shape == (batch_size, 6)
        owners = batches.indices(step)
        assert torch.equal(ids[:, 1] // 10, owners)
        assert torch.equal(pixels, next(batches(step))[0])
        torch.testing.assert_close(ids, next(batches(step))[1])
        for owner, marker in zip(owners.tolist(), ids[:, 1].tolist(), strict=True):
            seen[owner].add(marker % 10)
    assert all(len(variants) >= 2 for variants in seen.values()), seen
    with pytest.raises(ValueError, match="tokens must be"):
        TensorBatches(images, tokens.view(n, k, 2, 3), batch_size=batch_size)


def test_shapes_runs_render_the_requested_captions_per_image() -> None:
    images, captions = render_shapes(6, seed=0, image_size=64, workers=1, captions_per_sample=2)
    world = ShapesWorld(seed=0, image_size=64)
    assert images.shape == (6, 3, 64, 64) and [len(c) for c in captions] == [2] * 6
    for index, (first, second) in enumerate(captions):
        image, text = world.sample("train", index)
        assert first == text and second == world.caption("train", index, variant=1)
        assert torch.equal(images[index], torch.from_numpy(np.array(image)).permute(2, 0, 1))


def _losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def crash_after(batches, steps: int):
    """Batches that stop the run with an error after ``steps`` steps: an interrupted run."""

    def generate(start: int):
        for i, batch in enumerate(batches(start)):
            if i == steps:
                raise RuntimeError("simulated crash")
            yield batch

    return generate


def _saved_scaler(run_root: Path) -> dict | None:
    """The loss scaler's state in the step-6 checkpoint of the run under ``run_root``."""
    state = torch.load(run_root / "run" / "checkpoints" / "step_6.state.pt", weights_only=False)
    return state["scaler"]


@pytest.mark.parametrize("precision", ["fp32", "amp_fp16"])
def test_resume_continues_exactly(tmp_path: Path, precision: str) -> None:
    """In fp16 the loss scaler is part of the state: a resumed run that restarted it would
    count its growth interval again (and skip different steps on overflow)."""
    sets = {"model.patch_dropout": 0.25, "run.precision": precision}
    (tmp_path / "a").mkdir()
    full = config(tmp_path / "a", **sets)
    train(full, synthetic_batches())
    reference = _losses(tmp_path / "a" / "run")

    (tmp_path / "b").mkdir()
    interrupted = config(tmp_path / "b", **sets)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(interrupted, crash_after(synthetic_batches(), 4))  # checkpoint at step 3
    result = train(interrupted, synthetic_batches(), resume="latest")
    assert result.step == 6
    losses = _losses(tmp_path / "b" / "run")
    for step in (4, 5, 6):
        assert losses[step] == reference[step], f"step {step}"
    checkpoints = sorted(p.name for p in (tmp_path / "b" / "run" / "checkpoints").iterdir())
    assert checkpoints == ["latest", "step_3.safetensors", "step_3.state.pt",
                           "step_6.safetensors", "step_6.state.pt"]  # fmt: skip
    assert _saved_scaler(tmp_path / "b") == _saved_scaler(tmp_path / "a")  # None in fp32
    reloaded = clipforge.create_model(tmp_path / "b" / "run" / "checkpoints" / "step_6.safetensors")
    torch.testing.assert_close(reloaded.state_dict(), result.model.state_dict())


@pytest.mark.parametrize("precision", ["amp_bf16", "amp_fp16"])
def test_mixed_precision_trains_on_cpu_close_to_fp32(tmp_path: Path, precision: str) -> None:
    """The CPU equivalents of the GPU precisions: autocast really runs (the first loss moves off
    fp32's, but stays close), and fp16 gets a working loss scaler, not torch's warning that a
    CUDA scaler is disabled."""
    results = {}
    for name in ("fp32", precision):
        (tmp_path / name).mkdir()
        results[name] = train(
            config(tmp_path / name, **{"run.precision": name}), synthetic_batches()
        )
    first, reference = results[precision].history[0]["loss"], results["fp32"].history[0]["loss"]
    assert first != reference and first == pytest.approx(reference, rel=2e-2)
    assert all(math.isfinite(h["loss"]) for h in results[precision].history)
    scaler = _saved_scaler(tmp_path / precision)
    if precision == "amp_fp16":
        assert scaler["scale"] > 0  # an enabled scaler's state, saved for resuming
    else:
        assert scaler is None


def test_fp16_loss_scaling_skips_an_overflowing_step_and_lowers_the_scale() -> None:
    batch = next(synthetic_batches(batch_size=8)(0))
    torch.manual_seed(0)
    model = clipforge.create_model(TINY)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    state = TrainState(model, create_optimizer(model, OptimSection()), scaler)
    fp16 = resolve_precision("amp_fp16", "cpu")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def overflowing(*args, **kwargs):
        return create_loss("clip")(*args, **kwargs) * float("inf")

    train_step(state, batch, StepContext(overflowing, fp16))
    assert scaler.get_scale() == 2.0**9
    for name, value in model.named_parameters():
        torch.testing.assert_close(value.detach(), before[name], msg=name)  # step skipped
    train_step(state, batch, StepContext(create_loss("clip"), fp16))
    assert scaler.get_scale() == 2.0**9  # a finite step keeps the scale (it grows later)
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters())


KILL_SCRIPT = """
import os, signal, sys
import torch
import clipforge.train.state as state
from tests.test_train import config, synthetic_batches
from clipforge.train import train
from pathlib import Path

real_save = torch.save
def dying_save(obj, path, *a, **k):
    if "step_6" in str(path):  # the second checkpoint: die half-way through writing it
        with open(path, "wb") as f:
            f.write(b"partial")
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, path, *a, **k)
state.torch.save = dying_save
train(config(Path(sys.argv[1])), synthetic_batches())
"""


def test_sigkill_during_checkpoint_write_resumes_from_last_complete(tmp_path: Path) -> None:
    (tmp_path / "ref").mkdir()
    train(config(tmp_path / "ref"), synthetic_batches())
    reference = _losses(tmp_path / "ref" / "run")

    (tmp_path / "k").mkdir()
    root = Path(__file__).parent.parent
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "k")], cwd=root,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root)})  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_dir = tmp_path / "k" / "run"
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_3"
    result = train(config(tmp_path / "k"), synthetic_batches(), resume="latest")
    assert result.step == 6
    losses = _losses(run_dir)
    assert losses[6] == reference[6]


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    from clipforge.models import CheckpointError

    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        train(config(tmp_path), synthetic_batches(), resume="latest")


@pytest.mark.parametrize("loss", ["siglip", "infoloob", "cloob"])
def test_other_losses_train(tmp_path: Path, loss: str) -> None:
    result = train(config(tmp_path, **{"loss.name": loss, "run.steps": 2,
                                       "run.checkpoint_every": 2}), synthetic_batches())  # fmt: skip
    assert result.step == 2 and all(math.isfinite(h["loss"]) for h in result.history)
    if loss == "siglip":
        assert result.model.logit_bias is not None
        # the learned bias is part of the saved model: the checkpoint loads on its own
        saved = clipforge.create_model(tmp_path / "run" / "checkpoints" / "step_2.safetensors")
        torch.testing.assert_close(saved.state_dict(), result.model.state_dict())


def test_training_on_webdataset_shards_resumes_exactly(tmp_path: Path) -> None:
    """The streaming path: shapes shards written to disk, read back by the data pipeline."""
    from clipforge.data.shapes import write_shapes
    from clipforge.train import fit
    from clipforge.train.data import build_batches

    write_shapes(tmp_path / "shards", 96, format="wds", shard_size=32, image_size=32)
    shards = f"{tmp_path / 'shards'}/{{00000..00002}}.tar"

    def cfg(name: str) -> TrainConfig:
        return config(tmp_path, **{"data.kind": "wds", "data.train": shards, "data.num_samples": 96,
                                   "data.batch_size": 16, "run.steps": 8,
                                   "run.checkpoint_every": 2, "run.out_dir": tmp_path / name})  # fmt: skip

    fit(cfg("full"))  # 6 batches an epoch: the run crosses into a second epoch
    reference = _losses(tmp_path / "full")
    batches = build_batches(cfg("part"), image_size=32, context_length=16)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg("part"), crash_after(batches, 5))  # last checkpoint at step 4
    fit(cfg("part"), resume="latest")
    resumed = _losses(tmp_path / "part")
    assert [resumed[s] for s in range(5, 9)] == [reference[s] for s in range(5, 9)]


def test_tensorboard_events_hold_the_logged_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(config(tmp_path, **{"run.tensorboard": "true"}), synthetic_batches())
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "lr", "logit_scale"} <= tags
    logged = _losses(tmp_path / "run")
    scalars = {event.step: event.value for event in events.Scalars("loss")}
    assert scalars.keys() == logged.keys()
    for step, value in logged.items():
        assert scalars[step] == pytest.approx(value, rel=1e-6)


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tmp_path: Path) -> None:
    (tmp_path / "eager").mkdir()
    (tmp_path / "compiled").mkdir()
    train(config(tmp_path / "eager"), synthetic_batches())
    train(config(tmp_path / "compiled", **{"model.compile": "true"}), synthetic_batches())
    eager, compiled = _losses(tmp_path / "eager" / "run"), _losses(tmp_path / "compiled" / "run")
    assert eager.keys() == compiled.keys()
    for step in eager:
        assert compiled[step] == pytest.approx(eager[step], rel=1e-3, abs=1e-4), f"step {step}"
