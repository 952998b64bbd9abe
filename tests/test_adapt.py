"""Few-shot heads on features: shots, linear probe, Tip-Adapter, GDA, WiSE-FT (CoOp: test_coop).

Each method is checked against its formula written out here and on synthetic Gaussians whose
best achievable accuracy is known.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipforge.adapt import (
    GDAHead,
    LinearProbe,
    evaluate_path,
    fit_gda,
    fit_linear_probe,
    fit_logistic,
    fit_tip_adapter,
    gda_classifier,
    interpolate_weights,
    ledoit_wolf_shrinkage,
    logistic_objective,
    sample_few_shot,
    tip_logits,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _gaussians(
    n_per_class: int, means: torch.Tensor, scale: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples (C·n, D) of isotropic Gaussians around ``means`` (C, D), labels (C·n,)."""
    generator = torch.Generator().manual_seed(seed)
    num_classes, dim = means.shape
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    noise = torch.randn(labels.shape[0], dim, generator=generator, dtype=torch.float64)
    return (means[labels] + scale * noise).float(), labels


# --- shots -------------------------------------------------------------------------------


def test_shots_follow_the_stated_draw_exactly():
    labels = np.array([2, 0, 1, 1, 0, 2, 2, 0, 1, 0, 2, 1, 0])
    got = sample_few_shot(labels, 2, seed=7)
    rng = np.random.default_rng(7)
    expected = [
        np.sort(rng.choice(np.flatnonzero(labels == c), 2, replace=False)) for c in range(3)
    ]
    np.testing.assert_array_equal(got, np.concatenate(expected))
    assert got.dtype == np.int64
    assert [labels[i] for i in got] == [0, 0, 1, 1, 2, 2]


def test_shots_are_deterministic_and_depend_on_the_seed():
    labels = torch.arange(10).repeat(20)
    first = sample_few_shot(labels, 4, seed=1)
    np.testing.assert_array_equal(first, sample_few_shot(labels, 4, seed=1))
    assert not np.array_equal(first, sample_few_shot(labels, 4, seed=2))
    for c in range(10):
        chosen = first[c * 4 : (c + 1) * 4]
        assert len(set(chosen.tolist())) == 4 and (labels[chosen] == c).all()


def test_shots_exclude_gives_a_disjoint_validation_draw():
    labels = torch.arange(3).repeat(6)
    shots = sample_few_shot(labels, 4, seed=0)
    val = sample_few_shot(labels, 2, seed=0, exclude=shots)
    assert not set(shots.tolist()) & set(val.tolist())
    with pytest.raises(ValueError, match="class 0 .'cat'. has 2 available"):
        sample_few_shot(labels, 3, seed=0, exclude=shots, classnames=["cat", "dog", "cow"])


def test_shots_reject_bad_inputs_naming_them():
    labels = [0, 0, 0, 1]
    with pytest.raises(ValueError, match=r"class 1 \('dog'\) has 1 available .* k=2"):
        sample_few_shot(labels, 2, seed=0, classnames=["cat", "dog"])
    with pytest.raises(ValueError, match="class 2 has 0"):
        sample_few_shot(labels, 1, seed=0, num_classes=3)
    with pytest.raises(ValueError, match="k must be a positive int"):
        sample_few_shot(labels, 0, seed=0)
    with pytest.raises(ValueError, match="outside"):
        sample_few_shot([0, 5], 1, seed=0, num_classes=2)
    with pytest.raises(ValueError, match="1-D sequence of ints"):
        sample_few_shot([0.0, 1.0], 1, seed=0)
    with pytest.raises(ValueError, match="empty"):
        sample_few_shot([], 1, seed=0)


# --- linear probe -------------------------------------------------------------------------


def test_logistic_objective_is_the_written_definition():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0, 2, 2])
    w = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    b = torch.randn(3, generator=generator, dtype=torch.float64)
    lam = 0.7
    total = 0.0
    for i in range(7):
        logits = [sum(float(w[c, d] * x[i, d]) for d in range(3)) + float(b[c]) for c in range(3)]
        total += math.log(sum(math.exp(v) for v in logits)) - logits[int(y[i])]
    total += lam / 2 * sum(float(v) ** 2 for v in w.flatten())
    assert float(logistic_objective(x, y, w, b, lam)) == pytest.approx(total / 7, rel=1e-12)


def test_fit_logistic_matches_the_known_optimum_of_a_symmetric_problem():
    """x = +1 (class 1), x = -1 (class 0): W = [[-w], [w]], b = 0 with λ w = 2 σ(-2w).

    J = 2 log(1 + exp(-2w)) + λ w², so dJ/dw = 0 gives the equation, solved here by bisection.
    """
    lam = 0.5
    low, high = 0.0, 2.0 / lam
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if lam * mid < 2 / (1 + math.exp(2 * mid)) else (low, mid)
    x = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    weight, bias = fit_logistic(x, torch.tensor([1, 0]), lam, num_classes=2)
    torch.testing.assert_close(weight, torch.tensor([[-low], [low]], dtype=torch.float64))
    torch.testing.assert_close(bias, torch.zeros(2, dtype=torch.float64), atol=1e-9, rtol=0)


def test_fit_logistic_reaches_the_minimum_of_the_objective():
    """Stationary to the solver's tolerance, and no nearby point is lower (convexity)."""
    generator = torch.Generator().manual_seed(1)
    x = 3.0 + torch.randn(40, 5, generator=generator, dtype=torch.float64)  # off-centre
    y = torch.randint(0, 4, (40,), generator=generator)
    weight, bias = fit_logistic(x, y, 2.0, num_classes=4)

    def mean_objective(w, b):  # (Σ CE + (λ/2)||W||²) / N with λ = 2
        return (F.cross_entropy(x @ w.T + b, y, reduction="sum") + w.square().sum()) / 40

    w, b = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    mean_objective(w, b).backward()
    assert w.grad.abs().max() < 1e-6 and b.grad.abs().max() < 1e-6
    best = float(mean_objective(weight, bias))
    for _ in range(20):
        dw = 1e-3 * torch.randn(weight.shape, generator=generator, dtype=torch.float64)
        db = 1e-3 * torch.randn(bias.shape, generator=generator, dtype=torch.float64)
        assert float(mean_objective(weight + dw, bias + db)) > best
    assert float(bias.sum()) == pytest.approx(0.0, abs=1e-12)


def test_linear_probe_separates_gaussians_and_searches_lambda_by_bisection():
    means = 4.0 * torch.eye(3, 6, dtype=torch.float64)
    train_x, train_y = _gaussians(10, means, 0.5, seed=0)
    val_x, val_y = _gaussians(10, means, 0.5, seed=1)
    test_x, test_y = _gaussians(100, means, 0.5, seed=2)
    probe = fit_linear_probe(train_x, train_y, val_x, val_y)
    assert (probe.logits(test_x).argmax(-1) == test_y).float().mean() == 1.0
    sweep = probe.hparams["sweep"]
    logs = [math.log10(s["lambda"]) for s in sweep]
    assert all(abs(v * 8 - round(v * 8)) < 1e-9 for v in logs)  # on the 1/8-decade lattice
    assert {-6, -4, -2, 0, 2, 4, 6} <= {round(v, 9) for v in logs}
    assert 7 < len(sweep) <= 15
    best = max(sweep, key=lambda s: (s["val_accuracy"], -s["val_loss"], s["lambda"]))
    assert probe.hparams["lambda"] == best["lambda"]
    assert probe.hparams["refit_on"] == "train+val"
    again = fit_linear_probe(train_x, train_y, val_x, val_y)
    assert torch.equal(again.weight, probe.weight)  # deterministic


def test_linear_probe_save_load_round_trip(tmp_path):
    means = 3.0 * torch.eye(2, 4, dtype=torch.float64)
    x, y = _gaussians(5, means, 0.3, seed=0)
    probe = fit_linear_probe(x, y, lam=1.0, normalize=False)
    probe.save(tmp_path / "probe.safetensors")
    loaded = LinearProbe.load(tmp_path / "probe.safetensors")
    assert torch.equal(loaded.logits(x), probe.logits(x))
    assert loaded.hparams == probe.hparams and loaded.normalize is False
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        LinearProbe.load(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="bad.safetensors"):
        LinearProbe.load(tmp_path / "bad.safetensors")


def test_linear_probe_rejects_bad_inputs():
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="needs val_features"):
        fit_linear_probe(x, y)
    with pytest.raises(ValueError, match="both val_features and val_labels"):
        fit_linear_probe(x, y, x)
    with pytest.raises(ValueError, match="train: 6 feature rows but 5 labels"):
        fit_linear_probe(x, y[:5], lam=1.0)
    with pytest.raises(ValueError, match="val features has dimension 2"):
        fit_linear_probe(x, y, x[:, :2], y)
    with pytest.raises(ValueError, match="train labels must be a long tensor"):
        fit_linear_probe(x, y.float(), lam=1.0)


# --- Tip-Adapter --------------------------------------------------------------------------


def _tip_problem(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    zs = F.normalize(torch.randn(3, 8, generator=generator), dim=-1)
    x = torch.randn(12, 8, generator=generator)
    return zs, x, torch.arange(3).repeat(4)


def test_tip_logits_follow_the_formula():
    zs, x, y = _tip_problem()
    tip = fit_tip_adapter(x, y, zero_shot_weights=zs, alpha=1.7, beta=5.5)
    test = torch.randn(4, 8)
    fn = [[float(v) for v in row] for row in F.normalize(test, dim=-1)]
    keys = [[float(v) for v in row] for row in F.normalize(x, dim=-1)]
    for i, f in enumerate(fn):
        for c in range(3):
            zero_shot = 100 * sum(a * float(b) for a, b in zip(f, zs[c], strict=True))
            cache = sum(
                math.exp(-5.5 * (1 - sum(a * b for a, b in zip(f, k, strict=True))))
                for k, label in zip(keys, y.tolist(), strict=True)
                if label == c
            )
            assert float(tip.logits(test)[i, c]) == pytest.approx(zero_shot + 1.7 * cache, 1e-5)
    assert tip.hparams["searched_on"] is None and tip.hparams["alpha"] == 1.7


def test_tip_with_alpha_zero_is_zero_shot():
    zs, x, y = _tip_problem()
    keys, values = F.normalize(x, dim=-1), F.one_hot(y, 3).float()
    test = torch.randn(5, 8)
    expected = 100 * F.normalize(test, dim=-1) @ zs.T
    torch.testing.assert_close(tip_logits(test, zs, keys, values, 0.0, 3.0), expected)


def test_tip_search_picks_the_best_pair_on_validation():
    zs, x, y = _tip_problem()
    val_x, val_y = torch.randn(30, 8), torch.randint(0, 3, (30,))
    alphas, betas = (0.5, 1.0, 2.0), (1.0, 4.0)
    tip = fit_tip_adapter(x, y, val_x, val_y, zero_shot_weights=zs, alphas=alphas, betas=betas)
    keys, values = F.normalize(x, dim=-1), F.one_hot(y, 3).float()
    scores = {
        (a, b): (tip_logits(val_x, zs, keys, values, a, b).argmax(-1) == val_y).float().mean()
        for b in betas
        for a in alphas
    }
    assert tip.hparams["val_accuracy"] == pytest.approx(float(max(scores.values())))
    assert scores[(tip.alpha, tip.beta)] == max(scores.values())
    assert tip.hparams["searched_on"] == "val"


def test_tip_f_training_improves_train_accuracy_and_only_moves_keys():
    generator = torch.Generator().manual_seed(3)
    zs = F.normalize(torch.randn(4, 16, generator=generator), dim=-1)  # an uninformed head
    means = 2.0 * torch.randn(4, 16, generator=generator, dtype=torch.float64)
    x, y = _gaussians(8, means, 1.5, seed=4)
    tip = fit_tip_adapter(
        x, y, zero_shot_weights=zs, finetune=True, alpha=10.0, beta=0.5, epochs=30, lr=1e-2
    )
    history = tip.hparams["history"]
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert not torch.equal(tip.keys, F.normalize(x, dim=-1))
    assert torch.equal(tip.values, F.one_hot(y, 4).float())
    assert torch.equal(tip.zero_shot_weights, zs)


def test_tip_rejects_mismatched_zero_shot_head():
    zs, x, y = _tip_problem()
    with pytest.raises(ValueError, match="train features has dimension 8, expected 4"):
        fit_tip_adapter(x, y, zero_shot_weights=zs[:, :4])
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        fit_tip_adapter(x, y, zero_shot_weights=zs[:2])


# --- GDA ---------------------------------------------------------------------------------


def _shared_covariance_problem(seed: int):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    covariance = a @ a.T + 0.5 * torch.eye(3, dtype=torch.float64)
    means = torch.randn(2, 3, generator=generator, dtype=torch.float64)
    return means, covariance


def _sample(means, covariance, n_per_class: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(2).repeat_interleave(n_per_class)
    z = torch.randn(labels.shape[0], 3, generator=generator, dtype=torch.float64)
    return means[labels] + z @ torch.linalg.cholesky(covariance).T, labels


def test_gda_reaches_the_bayes_accuracy_of_shared_covariance_gaussians():
    means, covariance = _shared_covariance_problem(0)
    train_x, train_y = _sample(means, covariance, 2000, seed=1)
    test_x, test_y = _sample(means, covariance, 20000, seed=2)
    head = fit_gda(train_x.float(), train_y, normalize=False)
    gda_accuracy = float((head.logits(test_x.float()).argmax(-1) == test_y).double().mean())
    # Bayes rule with the true parameters and equal priors: class 1 iff w·x > w·(μ0 + μ1)/2.
    w = torch.linalg.solve(covariance, means[1] - means[0])
    bayes = ((test_x @ w > w @ (means[0] + means[1]) / 2).long() == test_y).double().mean()
    mahalanobis = float(torch.sqrt((means[1] - means[0]) @ w))
    analytic = 0.5 * (1 + math.erf(mahalanobis / 2 / math.sqrt(2)))  # Φ(Δ / 2)
    assert abs(float(bayes) - analytic) < 0.01  # the test sample is large enough
    assert gda_accuracy == pytest.approx(float(bayes), abs=0.005)
    assert 0.6 < analytic < 0.95  # the task is neither trivial nor hopeless


def test_gda_weights_follow_the_formula_without_shrinkage():
    means, covariance = _shared_covariance_problem(1)
    x, y = _sample(means, covariance, 7, seed=3)
    x, y = x[:11], y[:11]  # unequal priors: 7 and 4
    weight, bias, rho = gda_classifier(x, y, 2, shrinkage=0.0)
    mu = torch.stack([x[y == c].mean(0) for c in range(2)])
    centred = x - mu[y]
    precision = torch.linalg.inv(centred.T @ centred / 11)
    expected_w = torch.stack([precision @ mu[c] for c in range(2)])
    expected_b = torch.tensor([math.log(7 / 11), math.log(4 / 11)], dtype=torch.float64)
    expected_b -= 0.5 * torch.stack([mu[c] @ precision @ mu[c] for c in range(2)])
    torch.testing.assert_close(weight, expected_w)
    torch.testing.assert_close(bias, expected_b)
    assert rho == 0.0


def test_ledoit_wolf_shrinkage_follows_its_formula():
    generator = torch.Generator().manual_seed(5)
    z = torch.randn(6, 4, generator=generator, dtype=torch.float64) * torch.tensor([1, 2, 3, 4])
    n, d = z.shape
    s = z.T @ z / n
    m = s.trace() / d
    delta = float((s - m * torch.eye(d, dtype=z.dtype)).square().sum())
    beta_bar = sum(float((torch.outer(zi, zi) - s).square().sum()) for zi in z) / n**2
    assert ledoit_wolf_shrinkage(z) == pytest.approx(min(beta_bar, delta) / delta, rel=1e-10)
    _, _, rho = gda_classifier(z, torch.tensor([0, 0, 0, 1, 1, 1]), 2)
    assert 0.0 < rho <= 1.0


def test_gda_with_zero_shot_combines_and_searches_alpha():
    generator = torch.Generator().manual_seed(6)
    zs = F.normalize(torch.randn(3, 8, generator=generator), dim=-1)
    means = 3.0 * torch.randn(3, 8, generator=generator, dtype=torch.float64)
    x, y = _gaussians(6, means, 1.0, seed=7)
    val_x, val_y = _gaussians(6, means, 1.0, seed=8)
    alphas = (1e-4, 1e-2, 1.0, 100.0)
    head = fit_gda(x, y, val_x, val_y, zero_shot_weights=zs, alphas=alphas)
    weight, bias, _ = gda_classifier(F.normalize(x, dim=-1), y, 3)
    f = F.normalize(val_x, dim=-1)

    def combined(alpha: float) -> torch.Tensor:
        return 100 * f @ zs.T + alpha * (f @ weight.float().T + bias.float())

    torch.testing.assert_close(head.logits(val_x), combined(head.alpha))
    scores = [float((combined(a).argmax(-1) == val_y).float().mean()) for a in alphas]
    assert head.alpha == alphas[scores.index(max(scores))]
    assert head.hparams["val_accuracy"] == pytest.approx(max(scores))
    assert head.hparams["shrinkage_rule"] == "ledoit-wolf"


def test_gda_rejects_one_shot_and_missing_classes():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="use at least two shots"):
        fit_gda(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"classes \[1\] have none"):
        fit_gda(torch.randn(4, 4), torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="shrinkage must be in"):
        fit_gda(torch.randn(4, 4), torch.tensor([0, 0, 1, 1]), shrinkage=1.5)
    assert isinstance(fit_gda(torch.randn(4, 4), torch.tensor([0, 0, 1, 1])), GDAHead)


# --- WiSE-FT ------------------------------------------------------------------------------


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def _endpoint_states():
    torch.manual_seed(0)
    zero_shot, finetuned = _net(), _net()
    finetuned.train()(torch.randn(8, 3))  # moves the running stats and the counter
    return zero_shot.state_dict(), finetuned.state_dict()


def test_wise_ft_endpoints_are_exact_and_the_path_is_linear():
    zs, ft = _endpoint_states()
    for key, value in interpolate_weights(zs, ft, 0.0).items():
        assert torch.equal(value, zs[key]), key
    for key, value in interpolate_weights(zs, ft, 1.0).items():
        assert torch.equal(value, ft[key]), key
    merged = interpolate_weights(zs, ft, 0.3)
    for key in ("0.weight", "0.bias", "1.running_mean", "1.running_var"):
        torch.testing.assert_close(merged[key], 0.7 * zs[key] + 0.3 * ft[key])
        midpoint = interpolate_weights(zs, ft, 0.5)[key]
        torch.testing.assert_close(
            2 * midpoint, merged[key] + interpolate_weights(zs, ft, 0.7)[key]
        )


def test_wise_ft_takes_integer_buffers_from_the_nearer_endpoint():
    zs, ft = _endpoint_states()
    assert int(zs["1.num_batches_tracked"]) == 0 and int(ft["1.num_batches_tracked"]) == 1
    assert int(interpolate_weights(zs, ft, 0.4)["1.num_batches_tracked"]) == 0
    assert int(interpolate_weights(zs, ft, 0.5)["1.num_batches_tracked"]) == 1


def test_wise_ft_rejects_mismatched_states():
    zs, ft = _endpoint_states()
    with pytest.raises(ValueError, match="only in fine-tuned \\['extra'\\]"):
        interpolate_weights(zs, {**ft, "extra": torch.zeros(1)}, 0.5)
    with pytest.raises(ValueError, match="'0.bias'"):
        interpolate_weights(zs, {**ft, "0.bias": torch.zeros(5)}, 0.5)
    with pytest.raises(ValueError, match="'0.bias'.*float64"):
        interpolate_weights(zs, {**ft, "0.bias": ft["0.bias"].double()}, 0.5)
    with pytest.raises(ValueError, match="alpha must be in"):
        interpolate_weights(zs, ft, 1.5)


def test_evaluate_path_records_a_metric_per_alpha():
    zs, ft = _endpoint_states()
    net, x = _net().eval(), torch.randn(5, 3)

    def eval_fn(state):
        net.load_state_dict(state)
        with torch.no_grad():
            return {"mean_output": float(net(x).mean())}

    path = evaluate_path(zs, ft, eval_fn, alphas=(0.0, 0.5, 1.0))
    assert [p["alpha"] for p in path] == [0.0, 0.5, 1.0]
    net.load_state_dict(ft)
    with torch.no_grad():
        assert path[-1]["mean_output"] == float(net(x).mean())
    with pytest.raises(TypeError, match="mapping of metric names"):
        evaluate_path(zs, ft, lambda state: 0.5, alphas=(0.0,))
