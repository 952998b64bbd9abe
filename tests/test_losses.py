"""Each loss against its formula written out with loops, plus the options and error paths."""

import math

import pytest
import torch
import torch.nn.functional as F

from clipforge.losses import (
    CLIP_INIT_LOGIT_SCALE,
    SIGLIP_INIT_LOGIT_BIAS,
    SIGLIP_INIT_LOGIT_SCALE,
    clamp_logit_scale_,
    clip_loss,
    cloob_loss,
    create_loss,
    distill_loss,
    hopfield_retrieve,
    infoloob_loss,
    loss_names,
    loss_options,
    siglip_loss,
)

B, D = 6, 8
SCALE = 5.0
BIAS = -2.0


def _features(
    batch: int = B, dim: int = D, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    images, texts = torch.randn(2, batch, dim, dtype=torch.float64, generator=generator)
    return F.normalize(images, dim=-1), F.normalize(texts, dim=-1)


def _dot(x: torch.Tensor, y: torch.Tensor) -> float:
    return sum(float(a) * float(b) for a, b in zip(x, y, strict=True))


def _similarities(x: torch.Tensor, y: torch.Tensor, scale: float) -> list[list[float]]:
    return [[scale * _dot(x[i], y[j]) for j in range(len(y))] for i in range(len(x))]


def _cross_entropy_rows(s: list[list[float]], smoothing: float = 0.0) -> float:
    """Mean over rows of -((1 - eps) log p_ii + eps / N * sum_j log p_ij)."""
    total = 0.0
    for i, row in enumerate(s):
        log_norm = math.log(sum(math.exp(v) for v in row))
        log_p = [v - log_norm for v in row]
        total += -(1 - smoothing) * log_p[i] - smoothing / len(row) * sum(log_p)
    return total / len(s)


def _transpose(s: list[list[float]]) -> list[list[float]]:
    return [list(column) for column in zip(*s, strict=True)]


def _loob_rows(s: list[list[float]]) -> float:
    """Mean over rows of -log(exp(s_ii) / sum_{j != i} exp(s_ij))."""
    total = 0.0
    for i, row in enumerate(s):
        leave_one_out = sum(math.exp(v) for j, v in enumerate(row) if j != i)
        total += -math.log(math.exp(row[i]) / leave_one_out)
    return total / len(s)


def _expected_clip(x: torch.Tensor, y: torch.Tensor, scale: float, smoothing: float = 0.0):
    s = _similarities(x, y, scale)
    return (_cross_entropy_rows(s, smoothing) + _cross_entropy_rows(_transpose(s), smoothing)) / 2


def test_clip_loss_matches_formula():
    images, texts = _features()
    got = clip_loss(images, texts, SCALE)
    assert got.dim() == 0
    assert got.item() == pytest.approx(_expected_clip(images, texts, SCALE), rel=1e-9)


def test_clip_loss_ignores_bias_and_is_symmetric():
    images, texts = _features()
    torch.testing.assert_close(clip_loss(images, texts, SCALE), clip_loss(texts, images, SCALE))
    torch.testing.assert_close(
        clip_loss(images, texts, SCALE, torch.tensor(3.0)), clip_loss(images, texts, SCALE)
    )


def test_clip_label_smoothing_matches_formula_and_torch():
    images, texts = _features()
    smoothing = 0.1
    got = clip_loss(images, texts, SCALE, label_smoothing=smoothing)
    expected = _expected_clip(images, texts, SCALE, smoothing)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    logits = SCALE * images @ texts.T
    labels = torch.arange(B)
    torch_formula = (
        F.cross_entropy(logits, labels, label_smoothing=smoothing)
        + F.cross_entropy(logits.T, labels, label_smoothing=smoothing)
    ) / 2
    torch.testing.assert_close(got, torch_formula)
    assert got.item() != pytest.approx(clip_loss(images, texts, SCALE).item())


def test_clip_loss_near_zero_for_aligned_features_at_max_scale():
    aligned = torch.eye(B, D, dtype=torch.float64)  # orthonormal rows, image i == text i
    assert clip_loss(aligned, aligned.clone(), 100.0).item() < 1e-30
    assert clip_loss(aligned, aligned.roll(1, dims=0), 100.0).item() > 50


def test_siglip_loss_matches_formula():
    images, texts = _features()
    total = 0.0
    for i in range(B):
        for j in range(B):
            z = 1.0 if i == j else -1.0
            logit = SCALE * _dot(images[i], texts[j]) + BIAS
            total += -math.log(1 / (1 + math.exp(-z * logit)))
    got = siglip_loss(images, texts, SCALE, BIAS)
    assert got.item() == pytest.approx(total / B, rel=1e-9)
    torch.testing.assert_close(got, siglip_loss(texts, images, SCALE, BIAS))


def test_siglip_needs_bias():
    images, texts = _features()
    with pytest.raises(ValueError, match="logit_bias"):
        siglip_loss(images, texts, SCALE)


def test_init_constants():
    assert math.exp(CLIP_INIT_LOGIT_SCALE) == pytest.approx(1 / 0.07)
    assert math.exp(SIGLIP_INIT_LOGIT_SCALE) == pytest.approx(10.0)
    assert SIGLIP_INIT_LOGIT_BIAS == -10.0


def test_clamp_logit_scale_clamps_the_log_parameter_in_place():
    param = torch.nn.Parameter(torch.tensor(math.log(250.0)))
    clamp_logit_scale_(param)
    assert param.exp().item() == pytest.approx(100.0)
    assert param.requires_grad and param.grad_fn is None
    small = torch.nn.Parameter(torch.tensor(CLIP_INIT_LOGIT_SCALE))
    clamp_logit_scale_(small)
    assert small.item() == pytest.approx(CLIP_INIT_LOGIT_SCALE)


def test_infoloob_excludes_the_positive():
    images, texts = _features()
    s = _similarities(images, texts, SCALE)
    expected = (_loob_rows(s) + _loob_rows(_transpose(s))) / SCALE
    got = infoloob_loss(images, texts, SCALE)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    # Leaving the positive out turns each InfoNCE term l_i into l_i + log(1 - p_ii).
    logits = SCALE * images @ texts.T
    p = logits.softmax(dim=1).diagonal()
    image_to_text = F.cross_entropy(logits, torch.arange(B), reduction="none") + (-p).log1p()
    assert image_to_text.mean().item() == pytest.approx(_loob_rows(s), rel=1e-9)
    torch.testing.assert_close(got, infoloob_loss(texts, images, SCALE))


def test_infoloob_needs_two_pairs():
    images, texts = _features(batch=1)
    with pytest.raises(ValueError, match="at least 2"):
        infoloob_loss(images, texts, SCALE)


def _retrieve_by_loops(state: torch.Tensor, stored: torch.Tensor, beta: float) -> torch.Tensor:
    out = []
    for query in state:
        energies = [beta * _dot(query, pattern) for pattern in stored]
        norm = sum(math.exp(e) for e in energies)
        mixed = sum(
            math.exp(e) / norm * pattern for e, pattern in zip(energies, stored, strict=True)
        )
        out.append(mixed / mixed.norm())
    return torch.stack(out)


def test_hopfield_retrieve_matches_formula():
    images, texts = _features()
    got = hopfield_retrieve(texts, images, beta=8.0)
    torch.testing.assert_close(got, _retrieve_by_loops(texts, images, 8.0))
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(B, dtype=torch.float64))


def test_cloob_loss_matches_formula():
    images, texts = _features()
    beta, inv_tau = 4.0, 10.0
    u_x = _retrieve_by_loops(images, images, beta)  # images retrieved by images
    u_y = _retrieve_by_loops(texts, images, beta)  # images retrieved by texts
    v_x = _retrieve_by_loops(images, texts, beta)  # texts retrieved by images
    v_y = _retrieve_by_loops(texts, texts, beta)  # texts retrieved by texts
    expected = (
        _loob_rows(_similarities(u_x, u_y, inv_tau)) + _loob_rows(_similarities(v_y, v_x, inv_tau))
    ) / inv_tau
    got = cloob_loss(images, texts, inv_tau, hopfield_beta=beta)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    torch.testing.assert_close(got, cloob_loss(texts, images, inv_tau, hopfield_beta=beta))


def _teacher() -> dict:
    """The same frozen teacher (feature width 5) on every call."""
    teacher_images, teacher_texts = _features(dim=5, generator=torch.Generator().manual_seed(1))
    return {
        "teacher_image_features": teacher_images,
        "teacher_text_features": teacher_texts,
        "teacher_logit_scale": 7.0,
    }


def _soft_cross_entropy_rows(teacher: list[list[float]], student: list[list[float]]) -> float:
    total = 0.0
    for t_row, s_row in zip(teacher, student, strict=True):
        t_norm = sum(math.exp(v) for v in t_row)
        s_log_norm = math.log(sum(math.exp(v) for v in s_row))
        total += -sum(
            math.exp(t) / t_norm * (s - s_log_norm) for t, s in zip(t_row, s_row, strict=True)
        )
    return total / len(teacher)


def test_distill_loss_matches_formula():
    images, texts = _features()
    teacher = _teacher()
    temperature, weight = 2.0, 0.5
    student = _similarities(images, texts, SCALE / temperature)
    target = _similarities(
        teacher["teacher_image_features"], teacher["teacher_text_features"], 7.0 / temperature
    )
    distill = (
        _soft_cross_entropy_rows(target, student)
        + _soft_cross_entropy_rows(_transpose(target), _transpose(student))
    ) / 2
    expected = _expected_clip(images, texts, SCALE) + weight * temperature**2 * distill
    got = distill_loss(
        images, texts, SCALE, **teacher, distill_weight=weight, distill_temperature=temperature
    )
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_distill_from_itself_adds_no_gradient():
    """Soft cross-entropy against one's own distribution is stationary: only InfoNCE pulls."""
    images, texts = _features()
    images.requires_grad_(True)
    own = {
        "teacher_image_features": images.detach(),
        "teacher_text_features": texts,
        "teacher_logit_scale": SCALE,
        "distill_temperature": 3.0,
    }
    (distilled,) = torch.autograd.grad(distill_loss(images, texts, SCALE, **own), images)
    (plain,) = torch.autograd.grad(clip_loss(images, texts, SCALE), images)
    torch.testing.assert_close(distilled, plain)


LOSS_CALLS = {
    "clip": lambda i, t, s, b: clip_loss(i, t, s, label_smoothing=0.1),
    "siglip": siglip_loss,
    "infoloob": infoloob_loss,
    "cloob": cloob_loss,
    "distill": lambda i, t, s, b: distill_loss(i, t, s, **_teacher()),
}


@pytest.mark.parametrize("name", sorted(LOSS_CALLS))
def test_gradients_are_finite_and_reach_every_input(name):
    raw_images, raw_texts = (
        torch.randn(B, D, dtype=torch.float64, requires_grad=True) for _ in range(2)
    )
    log_scale = torch.tensor(CLIP_INIT_LOGIT_SCALE, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(SIGLIP_INIT_LOGIT_BIAS, dtype=torch.float64, requires_grad=True)
    images, texts = F.normalize(raw_images, dim=-1), F.normalize(raw_texts, dim=-1)
    loss = LOSS_CALLS[name](images, texts, log_scale.exp(), bias)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for tensor in (raw_images, raw_texts, log_scale):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0
    if name == "siglip":
        assert torch.isfinite(bias.grad) and bias.grad != 0


@pytest.mark.parametrize("name", sorted(LOSS_CALLS))
def test_create_loss_single_process_equals_plain_function(name):
    images, texts = _features()
    options = {"clip": {"label_smoothing": 0.1}}.get(name, {})
    extra = _teacher() if name == "distill" else {}
    got = create_loss(name, **options)(images, texts, SCALE, BIAS, **extra)
    torch.testing.assert_close(got, LOSS_CALLS[name](images, texts, SCALE, BIAS))


def test_create_loss_binds_options():
    images, texts = _features()
    got = create_loss("cloob", hopfield_beta=3.0)(images, texts, SCALE)
    torch.testing.assert_close(got, cloob_loss(images, texts, SCALE, hopfield_beta=3.0))
    local = create_loss("clip", local_loss=False, label_smoothing=0.2)(images, texts, SCALE)
    torch.testing.assert_close(local, clip_loss(images, texts, SCALE, label_smoothing=0.2))


def test_create_loss_unknown_name_lists_known_ones():
    assert loss_names() == ["clip", "cloob", "distill", "infoloob", "siglip"]
    with pytest.raises(ValueError, match="'clap'.*clip, cloob, distill, infoloob, siglip"):
        create_loss("clap")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("siglip", {"label_smoothing": 0.1}),
        ("clip", {"hopfield_beta": 8.0}),
        ("infoloob", {"local_loss": True}),
        ("cloob", {"distill_weight": 1.0}),
    ],
)
def test_create_loss_rejects_options_the_loss_does_not_take(name, options):
    (key,) = options
    with pytest.raises(ValueError, match=f"{key}=.*{name!r}"):
        create_loss(name, **options)


def test_loss_options_are_the_keyword_options_of_each_loss():
    """Teacher features are inputs, not options; defaults are the functions' own."""
    assert loss_options("clip") == {"local_loss": False, "label_smoothing": 0.0}
    assert loss_options("siglip") == {} and loss_options("infoloob") == {}
    assert loss_options("cloob") == {"hopfield_beta": 8.0}
    assert loss_options("distill") == {
        "distill_weight": 1.0,
        "distill_temperature": 1.0,
        "label_smoothing": 0.0,
    }
    with pytest.raises(ValueError, match="unknown loss 'clap'"):
        loss_options("clap")


def test_inputs_are_checked():
    images, texts = _features()
    with pytest.raises(ValueError, match=r"\(6, 8\) and \(5, 8\)"):
        clip_loss(images, texts[:5], SCALE)
    with pytest.raises(ValueError, match="label_smoothing"):
        clip_loss(images, texts, SCALE, label_smoothing=1.0)
    with pytest.raises(ValueError, match="beta"):
        cloob_loss(images, texts, SCALE, hopfield_beta=0.0)
    teacher = _teacher()
    teacher["teacher_text_features"] = teacher["teacher_text_features"][:, :3]
    with pytest.raises(ValueError, match=r"teacher_image_features .*\(6, 5\) and \(6, 3\)"):
        distill_loss(images, texts, SCALE, **teacher)
    with pytest.raises(ValueError, match="distill_temperature"):
        distill_loss(images, texts, SCALE, **_teacher(), distill_temperature=0.0)
    with pytest.raises(ValueError, match="max_scale"):
        clamp_logit_scale_(torch.nn.Parameter(torch.tensor(0.0)), max_scale=0.0)
