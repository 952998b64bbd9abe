"""The precision vocabulary: one meaning for each name on every device."""

from __future__ import annotations

import pytest
import torch

import clipforge
from clipforge import precision as precision_module
from clipforge.precision import (
    PRECISIONS,
    TRAIN_PRECISIONS,
    PrecisionError,
    check_precision,
    resolve_precision,
)


@pytest.mark.parametrize(
    ("name", "weights", "autocast"),
    [
        ("fp32", torch.float32, None),
        ("bf16", torch.bfloat16, None),
        ("fp16", torch.float16, None),
        ("amp_bf16", torch.float32, torch.bfloat16),
        ("amp_fp16", torch.float32, torch.float16),
    ],
)
def test_each_name_means_one_weight_dtype_and_autocast(name, weights, autocast) -> None:
    resolved = resolve_precision(name, "cpu")
    assert (resolved.name, resolved.weight_dtype, resolved.autocast_dtype) == (
        name,
        weights,
        autocast,
    )
    assert resolved.loss_scaled == (name == "amp_fp16")


def test_autocast_context_computes_in_its_dtype() -> None:
    a = torch.randn(4, 4)
    with resolve_precision("amp_bf16", "cpu").autocast():
        assert (a @ a).dtype == torch.bfloat16
    with resolve_precision("fp32", "cpu").autocast():
        assert (a @ a).dtype == torch.float32
    with resolve_precision("bf16", "cpu").autocast():  # weights cast, no autocast
        assert (a @ a).dtype == torch.float32


@pytest.mark.parametrize(("native", "expected"), [(True, "amp_bf16"), (False, "fp32")])
def test_auto_takes_bf16_autocast_only_where_bf16_is_native(monkeypatch, native, expected):
    flags = frozenset({"avx2", "amx_bf16"} if native else {"avx2", "avx512f"})
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: flags)
    resolved = resolve_precision("auto", "cpu")
    assert resolved.name == expected
    assert resolved.weight_dtype == torch.float32


def test_old_spelling_names_the_new_one() -> None:
    with pytest.raises(
        PrecisionError, match=r"run.precision='amp' is an old spelling: write 'amp_fp16'"
    ):
        check_precision("amp", "run.precision")


@pytest.mark.parametrize("bad", ["fp8", "", None, 16, "AMP_BF16"])
def test_unknown_names_fail_with_the_option_and_the_choices(bad) -> None:
    with pytest.raises(
        PrecisionError, match=r"embed.precision=.* is not a precision; choose from fp32"
    ):
        check_precision(bad, "embed.precision")


def test_a_name_outside_the_allowed_subset_says_so() -> None:
    with pytest.raises(PrecisionError, match=r"run.precision='bf16' is not allowed here"):
        check_precision("bf16", "run.precision", TRAIN_PRECISIONS)
    assert set(TRAIN_PRECISIONS) <= set(PRECISIONS)


@pytest.mark.parametrize("name", ["bf16", "fp16", "amp_bf16", "amp_fp16", "auto"])
def test_create_model_casts_weights_only_for_the_cast_names(name) -> None:
    model = clipforge.create_model("tiny", precision=name)
    expected = resolve_precision(name, "cpu").weight_dtype
    assert {p.dtype for p in model.parameters()} == {expected}


def test_create_model_rejects_the_old_spelling() -> None:
    with pytest.raises(PrecisionError, match="amp_fp16"):
        clipforge.create_model("tiny", precision="amp")
