"""Adaptation on the ``tiny`` model: CoOp's prompt path is exact, only its context trains, its
files round-trip; and every method runs end to end on shapes-world features."""

import json

import pytest
import torch
import torch.nn.functional as F

import clipforge
from clipforge.adapt import (
    LinearProbe,
    PromptLearner,
    coop_head,
    encode_prompt_embeddings,
    fit_coop,
    fit_gda,
    fit_linear_probe,
    fit_tip_adapter,
    sample_few_shot,
)
from clipforge.adapt.common import save_head
from clipforge.data.evalsets import ShapesClassificationSet
from clipforge.encoder import Encoder
from clipforge.transforms import image_transform
from clipforge.zeroshot import build_classifier

CLASSNAMES = ["cat", "red circle", "t-shirt", "Mr."]  # multi-token, hyphen, trailing period


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return clipforge.create_model("tiny").eval()


@pytest.fixture(scope="module")
def tokenizer(model):
    return clipforge.get_tokenizer(model)


def _text_head(model, tokenizer, texts):
    with torch.no_grad():
        return F.normalize(model.encode_text(tokenizer(texts)).float(), dim=-1)


def _toy_task(dim: int, seed: int = 0):
    """Three classes of unit features around random directions, 4 shots each."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, dim, generator=generator)
    labels = torch.arange(3).repeat(4)
    features = centres[labels] + 0.3 * torch.randn(12, dim, generator=generator)
    return F.normalize(features, dim=-1), labels


@pytest.mark.parametrize(
    ("position", "template"),
    [("end", "a photo of a {}."), ("middle", "a photo {} of a."), ("front", "{} a photo of a.")],
)
def test_prompt_path_equals_encoding_the_sentence(model, tokenizer, position, template):
    """Context initialised from the words' embeddings gives bit-identical class embeddings."""
    for class_specific in (False, True):
        learner = PromptLearner(
            model,
            tokenizer,
            CLASSNAMES,
            ctx_init="a photo of a",
            position=position,
            class_specific=class_specific,
        )
        with torch.no_grad():
            got = learner.class_embeddings(model)
        expected = _text_head(model, tokenizer, [template.format(n) for n in CLASSNAMES])
        assert torch.equal(got, expected)


def test_encode_prompt_embeddings_equals_encode_text_on_looked_up_ids(model, tokenizer):
    tokens = tokenizer(["a small blue star", "two squares", "x"])
    with torch.no_grad():
        expected = model.encode_text(tokens)
        got = encode_prompt_embeddings(model, model.token_embedding(tokens), tokens.argmax(-1))
    assert torch.equal(got, expected)


def test_shapes_and_initialisation(model, tokenizer):
    width, dim = model.token_embedding.embedding_dim, model.text_projection.shape[1]
    shared = PromptLearner(model, tokenizer, CLASSNAMES)
    assert shared.ctx.shape == (16, width) and shared.n_ctx == 16
    assert shared.ctx.std().item() == pytest.approx(0.02, rel=0.1)
    specific = PromptLearner(model, tokenizer, CLASSNAMES, n_ctx=4, class_specific=True)
    assert specific.ctx.shape == (len(CLASSNAMES), 4, width)
    assert specific.prompt_embeddings(model).shape == (len(CLASSNAMES), model.context_length, width)
    head = specific.class_embeddings(model)
    assert head.shape == (len(CLASSNAMES), dim)
    torch.testing.assert_close(head.norm(dim=-1), torch.ones(len(CLASSNAMES)))
    middle = PromptLearner(model, tokenizer, ["cat"], n_ctx=3, position="middle")
    assert middle.ctx_slots.tolist() == [[1, 3, 4]]  # [SOT] v1 cat v2 v3 . [EOT]
    assert middle.token_ids[0, 2] == tokenizer.encode("cat")[0] and middle.eot_index.tolist() == [6]
    assert [name for name, _ in shared.named_parameters()] == ["ctx"]
    assert list(shared.state_dict()) == ["ctx"]


def test_training_lowers_the_loss_and_only_moves_the_context(model, tokenizer):
    features, labels = _toy_task(model.text_projection.shape[1])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    initial = PromptLearner(model, tokenizer, CLASSNAMES[:3], n_ctx=4, seed=1)
    head = fit_coop(
        features,
        labels,
        features,
        labels,
        model=model,
        tokenizer=tokenizer,
        classnames=CLASSNAMES[:3],
        n_ctx=4,
        epochs=15,
        lr=0.5,
        batch_size=6,
        seed=1,
    )
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())
    assert {k: p.requires_grad for k, p in model.named_parameters()} == flags
    assert not model.training

    def loss_of(weights):
        return float(F.cross_entropy(head.logit_scale * features @ weights.T, labels))

    with torch.no_grad():
        start = loss_of(initial.class_embeddings(model))
    assert loss_of(head.weights) < 0.8 * start
    history = head.hparams["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert not torch.equal(head.learner.ctx, initial.ctx)
    assert 0.0 <= head.hparams["val_accuracy"] <= 1.0


def test_save_load_round_trip_gives_identical_logits(model, tokenizer, tmp_path):
    features, labels = _toy_task(model.text_projection.shape[1])
    head = fit_coop(
        features,
        labels,
        model=model,
        tokenizer=tokenizer,
        classnames=CLASSNAMES[:3],
        n_ctx=4,
        position="middle",
        class_specific=True,
        epochs=2,
        batch_size=6,
    )
    path = tmp_path / "coop.safetensors"
    head.learner.save(path)
    loaded = coop_head(PromptLearner.load(path, model, tokenizer), model)
    assert torch.equal(loaded.logits(features), head.logits(features))
    assert loaded.learner.position == "middle" and loaded.learner.class_specific
    assert loaded.learner.classnames == CLASSNAMES[:3]
    assert loaded.hparams == head.hparams


def test_load_refuses_another_model_and_bad_files(model, tokenizer, tmp_path):
    path = tmp_path / "coop.safetensors"
    PromptLearner(model, tokenizer, CLASSNAMES, n_ctx=2).save(path)
    torch.manual_seed(1)
    other_weights = clipforge.create_model("tiny")
    with pytest.raises(ValueError, match="other text-tower weights"):
        PromptLearner.load(path, other_weights, tokenizer)
    other_config = clipforge.create_model("tiny", context_length=24)
    with pytest.raises(ValueError, match=r"another model config \(differs in \['text_cfg'\]\)"):
        PromptLearner.load(path, other_config, tokenizer)
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        PromptLearner.load(tmp_path / "nothing.safetensors", model, tokenizer)
    LinearProbe(torch.zeros(2, 3), torch.zeros(2)).save(tmp_path / "linear.safetensors")
    with pytest.raises(ValueError, match="linear.safetensors holds a 'linear' head, not 'coop'"):
        PromptLearner.load(tmp_path / "linear.safetensors", model, tokenizer)
    save_head(tmp_path / "partial.safetensors", "coop", {"ctx": torch.zeros(2, 128)}, {"n_ctx": 2})
    with pytest.raises(
        ValueError, match="partial.safetensors: coop head file lacks .*'classnames'"
    ):
        PromptLearner.load(tmp_path / "partial.safetensors", model, tokenizer)


def test_bad_prompt_settings_name_the_input(model, tokenizer):
    with pytest.raises(
        ValueError, match="class 1 .'a very .*long name'.: .* more than the context length 32"
    ):
        PromptLearner(model, tokenizer, ["cat", "a very " * 10 + "long name"])
    with pytest.raises(ValueError, match="unknown class-token position 'left'"):
        PromptLearner(model, tokenizer, CLASSNAMES, position="left")
    with pytest.raises(ValueError, match="'a photo of a' has 4 tokens but n_ctx=8"):
        PromptLearner(model, tokenizer, CLASSNAMES, ctx_init="a photo of a", n_ctx=8)
    with pytest.raises(ValueError, match="class 1 has an empty name"):
        PromptLearner(model, tokenizer, ["cat", "  "])
    with pytest.raises(ValueError, match=r"train labels span \[0, 3\]"):
        fit_coop(
            torch.randn(2, 128),
            torch.tensor([0, 3]),
            model=model,
            tokenizer=tokenizer,
            classnames=CLASSNAMES[:2],
        )


def _shapes_features(model, split: str, size: int):
    dataset = ShapesClassificationSet(
        "colour", split=split, size=size, image_size=64, transform=image_transform(64, False)
    )
    pixels, labels = zip(*(dataset[i] for i in range(size)), strict=True)
    with torch.no_grad():
        return model.encode_image(torch.stack(pixels)), torch.tensor(labels), dataset.classnames


def test_every_method_runs_end_to_end_on_shapes_features(model, tokenizer):
    pool_x, pool_y, names = _shapes_features(model, "train", 120)
    test_x, _, _ = _shapes_features(model, "val", 20)
    shots = torch.from_numpy(sample_few_shot(pool_y, 2, seed=0, classnames=names))
    val = torch.from_numpy(sample_few_shot(pool_y, 1, seed=0, classnames=names, exclude=shots))
    train, held = (pool_x[shots], pool_y[shots]), (pool_x[val], pool_y[val])
    zero_shot = build_classifier(Encoder(model, tokenizer=tokenizer), names, ["a {} shape."])
    heads = {
        "linear": fit_linear_probe(*train, *held, num_classes=10, lam=1.0),
        "tip": fit_tip_adapter(*train, *held, zero_shot_weights=zero_shot),
        "tip-f": fit_tip_adapter(
            *train, *held, zero_shot_weights=zero_shot, finetune=True, epochs=2
        ),
        "gda": fit_gda(*train, *held, zero_shot_weights=zero_shot),
        "coop": fit_coop(
            *train, *held, model=model, tokenizer=tokenizer, classnames=names, n_ctx=4, epochs=1
        ),
    }
    for method, head in heads.items():
        logits = head.logits(test_x)
        assert logits.shape == (20, 10) and torch.isfinite(logits).all(), method
        record = json.loads(json.dumps(head.hparams))
        assert record["method"] == method
