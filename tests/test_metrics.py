"""Tests of clipforge.evaluate.metrics: parity with CLIP_benchmark, hand-worked formulas,
brute-force definitions, properties and input errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from clipforge.evaluate.metrics import (
    aupr,
    auroc,
    average_precision_per_class,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    fpr_at_tpr,
    mcm_score,
    mean_average_precision,
    mean_per_class_recall,
    modality_gap,
    negative_log_likelihood,
    ood_metrics,
    reliability_bins,
    retrieval_metrics,
    retrieval_ranks,
    retrieval_ranks_from_embeddings,
    target_ranks,
    temperature_scaling,
    topk_accuracy,
)

FAST = settings(max_examples=40, deadline=None)


# ---------------------------------------------------------------- parity with CLIP_benchmark


@pytest.fixture(scope="module")
def reference(fixtures):
    """Inputs and the values CLIP_benchmark v1.6 computed from them (stored as float32)."""
    inputs = load_file(fixtures / "metrics" / "inputs.safetensors")
    expected = json.loads((fixtures / "metrics" / "expected.json").read_text())
    return inputs, expected


def test_classification_matches_clip_benchmark(reference):
    inputs, expected = reference
    got = classification_metrics(inputs["logits"], inputs["labels"])
    assert set(got) == set(expected["classification"])
    for key, value in expected["classification"].items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize("batch_size", [1, 7, 1024])
def test_retrieval_from_embeddings_matches_clip_benchmark(reference, batch_size):
    inputs, expected = reference
    ranks = retrieval_ranks_from_embeddings(
        inputs["image_embeddings"],
        inputs["text_embeddings"],
        inputs["texts_image_index"],
        batch_size=batch_size,
    )
    got = retrieval_metrics(ranks, ks=(1, 5, 10))
    assert len(expected["retrieval"]) == 6
    for key, value in expected["retrieval"].items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def test_retrieval_from_score_matrix_matches_clip_benchmark(reference):
    inputs, expected = reference
    scores = inputs["text_embeddings"] @ inputs["image_embeddings"].T  # (T, I) as the reference
    got = retrieval_metrics(retrieval_ranks(scores, inputs["texts_image_index"], batch_size=64))
    for key, value in expected["retrieval"].items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


# ---------------------------------------------------------------- classification


def test_topk_accuracy_hand_example():
    logits = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.3, 0.6, 0.1]])
    targets = np.array([1, 1, 0, 2])
    # ranks of the true class: 1, 2, 3, 3
    assert target_ranks(logits, targets).tolist() == [1, 2, 3, 3]
    assert topk_accuracy(logits, targets, k=1) == 0.25
    assert topk_accuracy(logits, targets, k=2) == 0.5
    assert topk_accuracy(logits, targets, k=3) == 1.0


def test_topk_with_fewer_classes_than_k_uses_all_classes():
    logits = torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]])
    targets = torch.tensor([0, 0, 1])
    metrics = classification_metrics(logits, targets)
    assert metrics["acc1"] == pytest.approx(2 / 3)
    assert metrics["acc5"] == 1.0  # k = min(5, C) = 2: never NaN


def test_ties_rank_lower_class_index_first():
    logits = [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert target_ranks(logits, [0, 1, 2]).tolist() == [1, 2, 3]


def test_single_class():
    logits = np.zeros((4, 1))
    targets = np.zeros(4, dtype=np.int64)
    assert classification_metrics(logits, targets) == {
        "acc1": 1.0,
        "acc5": 1.0,
        "mean_per_class_recall": 1.0,
    }


def test_mean_per_class_recall_hand_example():
    # predictions 0, 0, 1, 1, 2; class 3 never occurs as a target and is left out.
    logits = np.eye(4)[[0, 0, 1, 1, 2]]
    targets = np.array([0, 0, 0, 1, 1])
    # recall of class 0: 2/3, of class 1: 1/2
    assert mean_per_class_recall(logits, targets) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_mean_per_class_recall_matches_balanced_accuracy_definition():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 7))
    targets = rng.integers(0, 6, size=200)  # class 6 is never a target
    predicted = logits.argmax(axis=1)
    recalls = [np.mean(predicted[targets == c] == c) for c in np.unique(targets)]
    assert mean_per_class_recall(logits, targets) == pytest.approx(np.mean(recalls), abs=1e-15)


def test_average_precision_hand_example():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    targets = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    # class 0: positives at ranks 1 and 3 -> (1/1 + 2/3) / 2; class 1: no positive -> 0
    per_class = average_precision_per_class(scores, targets)
    np.testing.assert_allclose(per_class, [5 / 6, 0.0], atol=1e-15)
    assert mean_average_precision(scores, targets) == pytest.approx(5 / 12)


def test_average_precision_matches_reference_formula():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(50, 6))
    targets = rng.random((50, 6)) < 0.3
    expected = []
    for c in range(6):
        truth = targets[np.argsort(-scores[:, c]), c]
        precision = np.cumsum(truth) / np.arange(1, 51)
        expected.append(precision[truth].sum() / max(truth.sum(), 1))
    np.testing.assert_allclose(average_precision_per_class(scores, targets), expected, atol=1e-12)


def test_average_precision_rejects_non_binary_targets():
    with pytest.raises(ValueError, match="targets must hold only 0 and 1"):
        average_precision_per_class(np.zeros((2, 2)), np.array([[0, 2], [1, 0]]))


@FAST
@given(st.integers(1, 12), st.integers(1, 30), st.integers(0, 2**31 - 1))
def test_acc1_at_most_acc5(classes, samples, seed):
    rng = np.random.default_rng(seed)
    logits = rng.integers(-2, 3, size=(samples, classes)).astype(float)  # many ties
    targets = rng.integers(0, classes, size=samples)
    metrics = classification_metrics(logits, targets, ks=(1, 2, 5))
    assert metrics["acc1"] <= metrics["acc2"] <= metrics["acc5"] <= 1.0
    assert metrics["acc1"] == pytest.approx(np.mean(logits.argmax(axis=1) == targets))


# ---------------------------------------------------------------- retrieval


def test_retrieval_hand_example():
    # 2 images; captions 0, 1 belong to image 0, captions 2, 3 to image 1.
    scores = np.array(
        [
            [0.9, 0.1],  # caption 0: own image first
            [0.2, 0.8],  # caption 1: own image second
            [0.3, 0.4],  # caption 2: own image first
            [0.5, 0.5],  # caption 3: tie, image 0 (lower index) ranks first -> rank 2
        ]
    )
    ranks = retrieval_ranks(scores, [0, 0, 1, 1])
    assert ranks.image_ranks.tolist() == [1, 2, 1, 2]
    # image 0 ranks captions 0.9, 0.5, 0.3, 0.2 -> its caption 0 is first
    # image 1 ranks captions 0.8, 0.5, 0.4, 0.1 -> caption 1 (not its own) first, then
    # caption 3 (its own) second
    assert ranks.text_ranks.tolist() == [1, 2]
    metrics = retrieval_metrics(ranks, ks=(1, 2))
    assert metrics["image_retrieval_recall@1"] == 0.5
    assert metrics["image_retrieval_recall@2"] == 1.0
    assert metrics["text_retrieval_recall@1"] == 0.5
    assert metrics["image_retrieval_mean_rank"] == 1.5
    assert metrics["image_retrieval_median_rank"] == 1.5
    assert metrics["text_retrieval_mean_rank"] == 1.5


def _stable_first_positive_rank(scores: np.ndarray, positive: np.ndarray) -> list[int]:
    order = np.argsort(-scores, axis=1, kind="stable")
    return [int(np.flatnonzero(positive[q, order[q]])[0]) + 1 for q in range(len(scores))]


@FAST
@given(st.integers(1, 6), st.integers(0, 2**31 - 1), st.integers(1, 9))
def test_retrieval_ranks_match_stable_sort(images, seed, batch_size):
    rng = np.random.default_rng(seed)
    index = np.concatenate([np.arange(images), rng.integers(0, images, size=rng.integers(0, 8))])
    scores = rng.integers(0, 4, size=(len(index), images)).astype(float)  # many ties
    ranks = retrieval_ranks(scores, index, batch_size=batch_size)
    positive = index[:, None] == np.arange(images)[None, :]  # (T, I)
    assert ranks.image_ranks.tolist() == _stable_first_positive_rank(scores, positive)
    assert ranks.text_ranks.tolist() == _stable_first_positive_rank(scores.T, positive.T)
    recalls = [retrieval_metrics(ranks, ks=(k,)) for k in range(1, len(index) + 1)]
    for direction in ("image", "text"):
        series = [r[f"{direction}_retrieval_recall@{k}"] for k, r in enumerate(recalls, 1)]
        assert series == sorted(series)  # monotone in k
        assert series[-1] == 1.0


def test_recall_matches_topk_definition_without_ties():
    rng = np.random.default_rng(3)
    images, texts = 8, 20
    index = np.concatenate([np.arange(images), rng.integers(0, images, size=texts - images)])
    scores = rng.normal(size=(texts, images))
    metrics = retrieval_metrics(retrieval_ranks(scores, index), ks=(1, 3))
    for k in (1, 3):
        top_images = np.argsort(-scores, axis=1)[:, :k]
        caption_hits = [index[t] in top_images[t] for t in range(texts)]
        top_texts = np.argsort(-scores.T, axis=1)[:, :k]
        image_hits = [np.any(index[top_texts[i]] == i) for i in range(images)]
        assert metrics[f"image_retrieval_recall@{k}"] == pytest.approx(np.mean(caption_hits))
        assert metrics[f"text_retrieval_recall@{k}"] == pytest.approx(np.mean(image_hits))


def test_embeddings_and_score_matrix_agree_and_norm_does_not_matter():
    rng = np.random.default_rng(4)
    image_features = rng.normal(size=(9, 5))
    text_features = rng.normal(size=(30, 5))
    index = np.arange(30) % 9
    scaled = retrieval_ranks_from_embeddings(image_features * 3.0, text_features, index)
    unit_images = image_features / np.linalg.norm(image_features, axis=1, keepdims=True)
    unit_texts = text_features / np.linalg.norm(text_features, axis=1, keepdims=True)
    full = retrieval_ranks(unit_texts @ unit_images.T, index)
    np.testing.assert_array_equal(scaled.image_ranks, full.image_ranks)
    np.testing.assert_array_equal(scaled.text_ranks, full.text_ranks)


def test_retrieval_rejects_image_without_caption():
    with pytest.raises(ValueError, match=r"texts_image_index gives no caption to 1 of 3 images"):
        retrieval_ranks(np.zeros((2, 3)), [0, 2])


def test_retrieval_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"scores and texts_image_index .* \(3, 2\) and \(2,\)"):
        retrieval_ranks(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match=r"texts_image_index must lie in \[0, 2\)"):
        retrieval_ranks(np.zeros((2, 2)), [0, 2])
    with pytest.raises(
        ValueError, match=r"image_features and text_features .* \(2, 4\) and \(2, 3\)"
    ):
        retrieval_ranks_from_embeddings(np.ones((2, 4)), np.ones((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="text_features is empty"):
        retrieval_ranks_from_embeddings(np.ones((2, 4)), np.ones((0, 4)), [0, 1])
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        retrieval_ranks(np.zeros((2, 2)), [0, 1], batch_size=0)
    with pytest.raises(ValueError, match="image_features has rows of zero norm"):
        retrieval_ranks_from_embeddings(np.zeros((2, 4)), np.ones((2, 4)), [0, 1])


# ---------------------------------------------------------------- calibration


def _logits_from_probs(probs) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64))


def test_ece_hand_example():
    logits = _logits_from_probs([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = [0, 1, 1, 1]
    # bin (13/15, 14/15]: confidence 0.9, accuracy 0.5; bin (8/15, 9/15]: 0.6 and 1.0
    assert expected_calibration_error(logits, labels) == pytest.approx(
        2 / 4 * 0.4 + 2 / 4 * 0.4, abs=1e-12
    )
    bins = reliability_bins(logits, labels)
    assert len(bins.count) == 15 and bins.count.sum() == 4
    assert bins.count[13] == 2 and bins.count[8] == 2
    assert bins.accuracy[13] == 0.5 and bins.confidence[8] == pytest.approx(0.6)
    assert np.isnan(bins.accuracy[0]) and bins.count[0] == 0


def test_confidence_on_a_bin_edge_falls_in_the_bin_it_closes():
    bins = reliability_bins(np.zeros((3, 2)), [0, 1, 0], n_bins=2)  # confidence exactly 0.5
    assert bins.count.tolist() == [3, 0]
    assert bins.upper[0] == 0.5


def test_ece_matches_guo_loop_definition():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(300, 4)) * 2
    labels = rng.integers(0, 4, size=300)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for lower, upper in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > lower) & (confidence <= upper)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    assert expected_calibration_error(logits, labels) == pytest.approx(ece, abs=1e-12)


def test_nll_hand_example():
    logits = np.array([[0.0, math.log(3.0)], [0.0, 0.0]])
    expected = (-math.log(0.75) - math.log(0.5)) / 2
    assert negative_log_likelihood(logits, [1, 0]) == pytest.approx(expected, abs=1e-12)


def _overconfident(n: int, temperature: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose labels are drawn from softmax(logits / temperature): true T is known."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 5, generator=generator, dtype=torch.float64) * 4
    labels = torch.multinomial(torch.softmax(logits / temperature, 1), 1, generator=generator)
    return logits, labels[:, 0]


def test_fit_temperature_recovers_true_temperature_and_minimises_nll():
    logits, labels = _overconfident(20000, 2.0, seed=0)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(2.0, rel=0.05)
    best = negative_log_likelihood(logits / temperature, labels)
    for factor in (0.99, 1.01):
        assert best < negative_log_likelihood(logits / (temperature * factor), labels)


def test_temperature_scaling_improves_held_out_calibration():
    fit_logits, fit_labels = _overconfident(3000, 2.5, seed=1)
    eval_logits, eval_labels = _overconfident(3000, 2.5, seed=2)
    result = temperature_scaling(fit_logits, fit_labels, eval_logits, eval_labels)
    assert result.nll_after < result.nll_before
    assert result.ece_after < result.ece_before / 2
    assert result.ece_before == pytest.approx(expected_calibration_error(eval_logits, eval_labels))
    assert set(result.as_dict()) == {
        "temperature",
        "ece_before",
        "ece_after",
        "nll_before",
        "nll_after",
    }


def test_fit_temperature_refuses_when_no_minimum_exists():
    with pytest.raises(ValueError, match="every sample of logits scores its label highest"):
        fit_temperature(np.eye(3)[[0, 1, 2, 0]] * 5.0, [0, 1, 2, 0])
    with pytest.raises(ValueError, match="no higher than the average class"):
        fit_temperature(np.eye(3)[[0, 1, 2, 0]] * 5.0, [1, 2, 0, 1])


def test_calibration_rejects_bad_inputs():
    with pytest.raises(ValueError, match="logits contains NaN"):
        expected_calibration_error([[float("nan"), 0.0]], [0])
    with pytest.raises(ValueError, match="logits contains infinite values"):
        negative_log_likelihood([[float("inf"), 0.0]], [0])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        negative_log_likelihood([[0.0, 0.0]], [2])
    with pytest.raises(ValueError, match="labels must hold integer class indices"):
        negative_log_likelihood([[0.0, 0.0]], [0.0])
    with pytest.raises(ValueError, match="n_bins must be an integer >= 1"):
        reliability_bins([[0.0, 0.0]], [0], n_bins=0)
    with pytest.raises(ValueError, match=r"fit_logits and eval_logits .* \(1, 2\) and \(1, 3\)"):
        temperature_scaling([[0.0, 1.0]], [0], [[0.0, 1.0, 2.0]], [0])


# ---------------------------------------------------------------- OOD detection


def test_mcm_score_hand_example():
    image_features = np.array([[2.0, 0.0], [1.0, 1.0]])
    class_text_features = np.array([[1.0, 0.0], [0.0, 3.0]])
    # cosines: [1, 0] and [0.7071, 0.7071]
    scores = mcm_score(image_features, class_text_features)
    np.testing.assert_allclose(scores, [math.e / (math.e + 1), 0.5], atol=1e-15)
    sharper = mcm_score(image_features, class_text_features, temperature=0.5)
    assert sharper[0] == pytest.approx(math.e**2 / (math.e**2 + 1))


def test_auroc_hand_example_with_ties():
    # pairs (in, out): (3,2) 1, (3,0) 1, (2,2) 1/2, (2,0) 1, (1,2) 0, (1,0) 1 -> 4.5 / 6
    assert auroc([3, 2, 1], [2, 0]) == 0.75
    assert auroc([1, 1], [1, 1, 1]) == 0.5


def test_fpr_at_tpr_hand_example():
    in_scores = np.arange(1, 21)  # 20 samples: TPR >= 0.95 needs 19 accepted -> threshold 2
    out_scores = np.array([0, 1, 2, 2, 5, 30])
    assert fpr_at_tpr(in_scores, out_scores) == pytest.approx(4 / 6)
    assert fpr_at_tpr(in_scores, out_scores, tpr=1.0) == pytest.approx(5 / 6)


def test_aupr_hand_example_with_ties():
    in_scores, out_scores = [0.9, 0.5], [0.7, 0.5]
    # thresholds 0.9 (R 1/2, P 1), 0.7 (R 1/2, P 1/2), 0.5 (R 1, P 2/4)
    assert aupr(in_scores, out_scores) == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    # AUPR-Out ranks by -score: thresholds -0.5 (one out, one in: R 1/2, P 1/2),
    # -0.7 (R 1, P 2/3), -0.9 (no new recall)
    assert aupr(in_scores, out_scores, positive="out") == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def _brute_force(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float) -> dict[str, float]:
    """The definitions, threshold by threshold (accept s >= t)."""
    pairs = [(a > b) + 0.5 * (a == b) for a in in_scores for b in out_scores]
    thresholds = np.unique(np.concatenate([in_scores, out_scores]))[::-1]  # decreasing
    rates = [(np.mean(in_scores >= t), np.mean(out_scores >= t)) for t in thresholds]
    fpr = min(f for t_rate, f in rates if t_rate >= tpr - 1e-12)

    def average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
        total, previous_recall = 0.0, 0.0
        for t in np.unique(np.concatenate([pos, neg]))[::-1]:
            hits, accepted = np.sum(pos >= t), np.sum(pos >= t) + np.sum(neg >= t)
            recall = hits / len(pos)
            total += (recall - previous_recall) * hits / accepted
            previous_recall = recall
        return total

    return {
        "auroc": float(np.mean(pairs)),
        f"fpr@{tpr * 100:g}tpr": fpr,
        "aupr_in": average_precision(in_scores, out_scores),
        "aupr_out": average_precision(-out_scores, -in_scores),
    }


@FAST
@given(
    st.integers(1, 25),
    st.integers(1, 25),
    st.integers(0, 2**31 - 1),
    st.sampled_from([0.95, 0.8, 0.5]),
)
def test_ood_metrics_match_brute_force(n_in, n_out, seed, tpr):
    rng = np.random.default_rng(seed)
    in_scores = rng.integers(0, 6, size=n_in).astype(float)  # many ties
    out_scores = rng.integers(-2, 4, size=n_out).astype(float)
    got = ood_metrics(in_scores, out_scores, tpr=tpr)
    expected = _brute_force(in_scores, out_scores, tpr)
    assert set(got) == set(expected)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key


@FAST
@given(
    st.lists(st.integers(-5, 5), min_size=1, max_size=20),
    st.lists(st.integers(-5, 5), min_size=1, max_size=20),
)
def test_auroc_of_negated_score_is_complement(in_scores, out_scores):
    scores_in, scores_out = np.array(in_scores, float), np.array(out_scores, float)
    assert auroc(scores_in, scores_out) + auroc(-scores_in, -scores_out) == pytest.approx(1.0)
    assert auroc(scores_in, scores_out) + auroc(scores_out, scores_in) == pytest.approx(1.0)


def test_ood_rejects_bad_inputs():
    with pytest.raises(ValueError, match="in_scores is empty"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="out_scores contains NaN"):
        aupr([1.0], [float("nan")])
    with pytest.raises(ValueError, match=r"tpr must lie in \(0, 1\]"):
        fpr_at_tpr([1.0], [0.0], tpr=0.0)
    with pytest.raises(ValueError, match="positive must be 'in' or 'out'"):
        aupr([1.0], [0.0], positive="ood")
    with pytest.raises(
        ValueError, match=r"image_features and class_text_features .* \(1, 2\) and \(3, 4\)"
    ):
        mcm_score(np.ones((1, 2)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        mcm_score(np.ones((1, 2)), np.ones((3, 2)), temperature=0.0)


# ---------------------------------------------------------------- modality gap and input forms


def test_modality_gap_hand_example():
    image_features = np.array([[1.0, 0.0], [2.0, 0.0]])
    text_features = np.array([[0.0, 3.0]])
    assert modality_gap(image_features, text_features) == pytest.approx(math.sqrt(2.0))
    assert modality_gap(image_features, image_features[:1] * 5) == 0.0


def test_modality_gap_rejects_bad_inputs():
    with pytest.raises(
        ValueError, match=r"image_features and text_features .* \(1, 2\) and \(1, 3\)"
    ):
        modality_gap(np.ones((1, 2)), np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"text_features has rows of zero norm \(rows \[1\]\)"):
        modality_gap(np.ones((1, 2)), np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(
        ValueError, match=r"image_features must have 2 dimension\(s\), got shape \(2,\)"
    ):
        modality_gap(np.ones(2), np.ones((1, 2)))


def test_numpy_torch_and_lists_give_the_same_results():
    logits = [[0.3, 0.1, 0.6], [0.2, 0.7, 0.1]]
    targets = [2, 0]
    as_lists = classification_metrics(logits, targets)
    assert classification_metrics(torch.tensor(logits), torch.tensor(targets)) == as_lists
    assert classification_metrics(np.array(logits, np.float32), np.array(targets)) == as_lists


def test_classification_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"logits and targets .* \(2, 3\) and \(3,\)"):
        classification_metrics(np.zeros((2, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match=r"logits is empty \(shape \(0, 3\)\)"):
        classification_metrics(np.zeros((0, 3)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\), got values from -1 to 1"):
        topk_accuracy(np.zeros((2, 3)), [-1, 1])
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        topk_accuracy(np.zeros((2, 3)), [0, 1], k=0)
