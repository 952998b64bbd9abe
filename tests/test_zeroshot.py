"""Zero-shot heads: template/class-name files, CLIP recipe, DCLIP, WaffleCLIP, CuPL, files, ensembles.

Every head is checked against the formula written out here with the ``tiny`` model: prompts
are encoded one by one with ``model.encode_text``, normalised and combined by hand.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import clipforge
from clipforge.encoder import Encoder
from clipforge.tokenizer import get_tokenizer
from clipforge.zeroshot import (
    HeadEnsemble,
    ZeroShotHead,
    average_weights,
    build_classifier,
    cupl_head,
    descriptor_head,
    descriptor_prompts,
    descriptor_sentence,
    load_class_prompts,
    load_classnames,
    load_descriptors,
    load_head,
    load_templates,
    packaged_sources,
    save_head,
    template_head,
    vocabulary_words,
    waffle_descriptors,
    waffle_head,
    waffle_shape,
)
from clipforge.zeroshot.prompt_files import PACKAGE_DIR

CLASSES = ["cat", "dog", "bird"]
TEMPLATES = ["a photo of a {}.", "a drawing of the {}.", "itap of my {}."]
OPENAI_SHORT = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


@pytest.fixture(scope="module")
def model() -> clipforge.CLIP:
    torch.manual_seed(0)
    return clipforge.create_model("tiny").eval()


@pytest.fixture(scope="module")
def tokenizer(model):
    return get_tokenizer(model)


@pytest.fixture(scope="module")
def encoder(model, tokenizer) -> Encoder:
    return Encoder(model, tokenizer=tokenizer)


@pytest.fixture
def features(model) -> torch.Tensor:
    return torch.randn(5, model.config.embed_dim)  # (B, D), not normalised on purpose


@torch.no_grad()
def embed(model, tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    """Each prompt's unit-norm embedding (D,), the hand computation every head is checked on."""
    rows = F.normalize(model.encode_text(tokenizer(texts)).float(), dim=-1)  # (N, D)
    return dict(zip(texts, rows, strict=True))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- packaged templates and names


def test_openai_imagenet_templates_are_the_80_distinct_ones() -> None:
    lines = (PACKAGE_DIR / "openai_imagenet.txt").read_text().splitlines()
    templates = load_templates("openai_imagenet")
    assert templates == lines and len(templates) == 80 and len(set(templates)) == 80
    assert all(t.count("{}") == 1 and t.count("{") == 1 for t in templates)
    assert templates[:3] == ["a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}."]
    assert templates[-1] == "a tattoo of the {}."


def test_openai_short_list_is_the_selected_seven_of_the_80() -> None:
    short = load_templates("openai_imagenet_short")
    assert short == OPENAI_SHORT
    assert set(short) <= set(load_templates("openai_imagenet"))


def test_packaged_dataset_files_all_load() -> None:
    assert {"openai_imagenet", "openai_imagenet_short", "dataset_templates"} <= set(
        packaged_sources()
    )
    datasets = json.loads((PACKAGE_DIR / "dataset_templates.json").read_text())
    for dataset in datasets:
        assert load_templates(dataset=dataset)
    assert load_templates(dataset="imagenet1k") == load_templates("openai_imagenet")
    for dataset in json.loads((PACKAGE_DIR / "dataset_classnames.json").read_text()):
        assert load_classnames(dataset=dataset)
    imagenet = load_classnames(dataset="imagenet1k")
    # OpenAI's list repeats "missile" and "sunglasses"; the shipped copy names 744 and 836 apart.
    assert len(imagenet) == 1000 and imagenet[744] == "projectile" and imagenet[836] == "sunglass"


# ---------------------------------------------------------------- file formats


def test_text_file_strips_lines_skips_blanks_and_reads_c_placeholders(tmp_path) -> None:
    path = write(tmp_path / "t.txt", "  a photo of a {c}.  \n\n\ta {} toy.\n")
    assert load_templates(path) == ["a photo of a {}.", "a {} toy."]
    assert load_templates(str(path)) == ["a photo of a {}.", "a {} toy."]


def test_json_list_dataset_keyed_and_language_keyed(tmp_path) -> None:
    write(tmp_path / "list.json", json.dumps(["a {c}."]))
    assert load_templates(tmp_path / "list.json") == ["a {}."]
    keyed = {"cifar10": ["a photo of a {c}."], "pets": {"en": ["a {} pet."], "de": ["ein {}."]}}
    write(tmp_path / "keyed.json", json.dumps(keyed))
    assert load_templates(tmp_path / "keyed.json", dataset="cifar10") == ["a photo of a {}."]
    assert load_templates(tmp_path / "keyed.json", dataset="pets", language="de") == ["ein {}."]
    write(tmp_path / "names.json", json.dumps({"en": ["cat", "dog"], "de": ["Katze", "Hund"]}))
    assert load_classnames(tmp_path / "names.json") == ["cat", "dog"]
    assert load_classnames(tmp_path / "names.json", language="de") == ["Katze", "Hund"]


def test_language_selects_the_language_file(tmp_path) -> None:
    write(tmp_path / "animals.txt", "cat\ndog\n")
    write(tmp_path / "animals.de.txt", "Katze\nHund\n")
    write(tmp_path / "prompts.txt", "a photo of a {}.\n")
    write(tmp_path / "prompts.de.json", json.dumps(["ein Foto von einer {}."]))
    stem = tmp_path / "animals"
    assert load_classnames(stem) == ["cat", "dog"]
    assert load_classnames(stem, language="de") == ["Katze", "Hund"]
    assert load_classnames(tmp_path / "animals.txt", language="de") == ["Katze", "Hund"]
    assert load_classnames(tmp_path / "animals.txt") == ["cat", "dog"]
    assert load_templates(tmp_path / "prompts", language="de") == ["ein Foto von einer {}."]
    with pytest.raises(ValueError, match=r"no language 'fr'.*\['de', 'en'\]"):
        load_classnames(stem, language="fr")
    with pytest.raises(ValueError, match=r"no language 'fr'.*\['de', 'en'\]"):
        load_templates(tmp_path / "prompts.txt", language="fr")


def test_unknown_language_in_a_language_keyed_file_lists_the_keys(tmp_path) -> None:
    write(tmp_path / "names.json", json.dumps({"en": ["cat"], "de": ["Katze"]}))
    with pytest.raises(ValueError, match=r"names.json: no language 'it'.*\['de', 'en'\]"):
        load_classnames(tmp_path / "names.json", language="it")


def test_language_only_files_name_their_languages(tmp_path) -> None:
    write(tmp_path / "only.de.txt", "Katze\n")
    with pytest.raises(ValueError, match=r"no class names in language 'en'.*\['de'\]"):
        load_classnames(tmp_path / "only")


@pytest.mark.parametrize(
    ("name", "content", "call", "error", "pattern"),
    [
        ("missing.txt", None, "templates", FileNotFoundError, r"missing\.txt"),
        ("empty.txt", "\n  \n", "templates", ValueError, r"empty\.txt: no templates"),
        ("empty.json", "[]", "names", ValueError, r"empty\.json: no class names"),
        ("t.txt", "a {}.\nno placeholder\n", "templates", ValueError, r"t\.txt:2: template 'no"),
        ("t.txt", "a {} and {}.\n", "templates", ValueError, r"t\.txt:1: .*exactly one"),
        ("t.txt", "a {x} {}.\n", "templates", ValueError, r"t\.txt:1: .*no other braces"),
        (
            "t.txt",
            "a {}.\nb {}.\na {}.\n",
            "templates",
            ValueError,
            r"t\.txt:3: duplicate template",
        ),
        (
            "n.txt",
            "cat\ndog\ncat\n",
            "names",
            ValueError,
            r"n\.txt:3: duplicate class name 'cat' \(first at .*n\.txt:1\)",
        ),
        (
            "n.json",
            '["cat", "dog", "cat"]',
            "names",
            ValueError,
            r"n\.json \[2\]: duplicate class name 'cat'",
        ),
        ("n.json", '["cat", 3]', "names", ValueError, r"n\.json \[1\]: expected a string, got int"),
        ("n.json", '["cat", " "]', "names", ValueError, r"n\.json \[1\]: empty class name"),
        ("n.json", '{"a": ["cat"]', "names", ValueError, r"n\.json: invalid JSON at line 1 column"),
        ("n.json", '"cat"', "names", ValueError, r"n\.json: expected a list of strings, got str"),
        (
            "t.json",
            '{"cars": ["no slot"]}',
            "templates-cars",
            ValueError,
            r't\.json \["cars"\]\[0\]: template',
        ),
        (
            "t.json",
            '{"cars": ["a {}."]}',
            "templates-pets",
            ValueError,
            r"no dataset 'pets'; available: \['cars'\]",
        ),
        (
            "t.json",
            '{"cars": ["a {}."]}',
            "templates",
            ValueError,
            r"no language 'en'.*pass dataset=",
        ),
        ("t.txt", "a {}.\n", "templates-cars", ValueError, r"not keyed by dataset"),
    ],
)
def test_file_errors_name_the_file_and_line(tmp_path, name, content, call, error, pattern) -> None:
    path = tmp_path / name
    if content is not None:
        write(path, content)
    dataset = call.split("-")[1] if "-" in call else None
    loader = load_classnames if call == "names" else load_templates
    with pytest.raises(error, match=pattern):
        loader(path, dataset=dataset)


def test_unknown_source_and_bad_language_code() -> None:
    with pytest.raises(ValueError, match=r"unknown templates source 'nope'.*openai_imagenet"):
        load_templates("nope")
    with pytest.raises(ValueError, match=r"language must be a code"):
        load_templates("openai_imagenet", language="../x")
    with pytest.raises(FileNotFoundError, match=r"no class names file for .*sub/names"):
        load_classnames("sub/names")


# ---------------------------------------------------------------- the CLIP recipe


def test_template_head_matches_the_hand_computed_recipe(
    model, tokenizer, features, encoder
) -> None:
    head = template_head(encoder, CLASSES, TEMPLATES, model_name="tiny", source="test")
    e = embed(model, tokenizer, [t.format(c) for c in CLASSES for t in TEMPLATES])
    expected = torch.stack(
        [
            F.normalize(torch.stack([e[t.format(c)] for t in TEMPLATES]).mean(0), dim=0)
            for c in CLASSES
        ]
    )  # (C, D)
    torch.testing.assert_close(head.weights, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        head.logits(features), F.normalize(features, dim=-1) @ expected.T, rtol=0, atol=1e-6
    )
    assert head.scoring == "dot" and head.classnames == tuple(CLASSES)
    assert head.provenance["method"] == "templates" and head.provenance["model"] == "tiny"
    assert head.provenance["templates"] == TEMPLATES and head.provenance["num_prompts"] == 9


def test_build_classifier_keeps_its_contract_and_restores_train_mode(model, encoder) -> None:
    model.train()
    try:
        weights = build_classifier(encoder, CLASSES, TEMPLATES)
        assert model.training
    finally:
        model.eval()
    head = template_head(encoder, CLASSES, TEMPLATES)
    assert torch.equal(weights, head.weights)
    with pytest.raises(ValueError, match="must contain"):
        build_classifier(encoder, CLASSES, ["no slot"])


# ---------------------------------------------------------------- DCLIP


@pytest.mark.parametrize(
    ("descriptor", "sentence"),
    [
        ("a long tail", "which is a long tail"),
        ("an orange beak", "which is an orange beak"),
        ("antennae", "which is antennae"),  # plain prefix test, as in the DCLIP release
        ("has webbed feet", "which has webbed feet"),
        ("often found in trees", "which often found in trees"),
        ("typically grey", "which typically grey"),
        ("may be spotted", "which may be spotted"),
        ("can fly", "which can fly"),
        ("used for hunting", "which is used for hunting"),
        ("black stripes", "which has black stripes"),
        ("A large head", "which has A large head"),
    ],
)
def test_descriptor_sentence_follows_the_dclip_rewrite(descriptor, sentence) -> None:
    assert descriptor_sentence(descriptor) == sentence


DESCRIPTORS = {
    "cat": ["whiskers", "a long tail"],
    "dog": ["floppy ears", "has a wet nose", "used for herding"],
    "bird": ["feathers"],
    "fish": ["fins"],  # not a class here: ignored
}
DCLIP_PROMPTS = [
    ["cat, which has whiskers", "cat, which is a long tail"],
    ["dog, which has floppy ears", "dog, which has a wet nose", "dog, which is used for herding"],
    ["bird, which has feathers"],
]


def test_descriptor_prompts_are_written_as_dclip_writes_them() -> None:
    assert descriptor_prompts(CLASSES, DESCRIPTORS) == DCLIP_PROMPTS
    assert descriptor_prompts(
        ["bird"], DESCRIPTORS, prompt_format="a {classname}: {descriptor}.", rewrite=False
    ) == [["a bird: feathers."]]


def test_descriptor_head_scores_the_mean_of_descriptor_similarities(
    model, tokenizer, features, encoder
):
    head = descriptor_head(encoder, CLASSES, DESCRIPTORS, source="d.json")
    f = F.normalize(features, dim=-1)  # (B, D)
    e = embed(model, tokenizer, [p for prompts in DCLIP_PROMPTS for p in prompts])
    expected = torch.stack(
        [torch.stack([f @ e[p] for p in prompts]).mean(0) for prompts in DCLIP_PROMPTS], dim=1
    )  # (B, C)
    torch.testing.assert_close(head.logits(features), expected, rtol=0, atol=1e-6)
    # Not the normalised mean embedding: that scores differently (class means have norm < 1).
    assert not torch.allclose(f @ head.weights.T, expected, atol=1e-4)
    assert head.scoring == "mean_similarity" and head.prompt_embeddings.shape[0] == 6
    assert head.provenance["method"] == "dclip" and head.provenance["source"] == "d.json"


def test_descriptor_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"d\.json: no descriptors for class 'cow'"):
        descriptor_prompts(["cat", "cow"], DESCRIPTORS, source="d.json")
    with pytest.raises(ValueError, match=r"class 'cat' has an empty descriptor list"):
        descriptor_prompts(["cat"], {"cat": []})
    with pytest.raises(ValueError, match=r"lacks \{descriptor\}"):
        descriptor_prompts(["cat"], DESCRIPTORS, prompt_format="{classname}")
    with pytest.raises(ValueError, match=r"may only use"):
        descriptor_prompts(["cat"], DESCRIPTORS, prompt_format="{classname} {descriptor} {x}")
    with pytest.raises(FileNotFoundError, match=r"no descriptor file .*nope\.json"):
        load_descriptors(tmp_path / "nope.json")
    with pytest.raises(ValueError, match=r'bad\.json \["cat"\]: empty descriptor list'):
        load_descriptors(write(tmp_path / "bad.json", '{"cat": []}'))
    with pytest.raises(ValueError, match=r"expected a non-empty object"):
        load_descriptors(write(tmp_path / "list.json", '["cat"]'))
    with pytest.raises(ValueError, match=r'mixed\.json \["cat"\]: expected a list of descriptor'):
        load_descriptors(write(tmp_path / "mixed.json", '{"cat": ["ok", 1]}'))
    assert load_descriptors(write(tmp_path / "ok.json", json.dumps(DESCRIPTORS))) == DESCRIPTORS


# ---------------------------------------------------------------- WaffleCLIP


def test_vocabulary_words_are_whole_alphabetic_words() -> None:
    words = vocabulary_words()
    assert len(words) > 20_000 and len(set(words)) == len(words)
    assert all(w.isascii() and w.isalpha() and len(w) >= 3 for w in words)
    assert {"photo", "dog", "the"} <= set(words)


def test_waffle_shape_follows_the_formula() -> None:
    names = ["great white shark", "cat", "tiger shark"]
    # words: mean(3, 1, 2) = 2; word length: mean(mean(5, 5, 5), 3, mean(5, 5)) = 4.33 -> 4;
    # groups: round(mean(2, 0, 1)) + 1 = 2; chars: ceil(mean(5, 3, 5)) = 5 -> 5 + (2 - 1) = 6.
    shape = waffle_shape(names)
    assert (shape.words, shape.word_length, shape.groups, shape.group_length) == (2, 4, 2, 3)
    shape = waffle_shape(["cat", "dog"])  # chars 3 -> 3 + (1 - 0) = 4 in one group
    assert (shape.words, shape.word_length, shape.groups, shape.group_length) == (1, 3, 1, 4)


def test_waffle_descriptors_are_deterministic_per_seed_and_drawn_from_the_pools() -> None:
    names = ["great white shark", "cat", "tiger shark"]
    first = waffle_descriptors(names, seed=3, pairs=6)
    assert first == waffle_descriptors(names, seed=3, pairs=6)
    assert first != waffle_descriptors(names, seed=4, pairs=6)
    assert len(first) == 12
    prefixes = {w[:4] for w in vocabulary_words()}
    for word_part, char_part in zip(first[0::2], first[1::2], strict=True):
        assert len(word_part.split(" ")) == 2 and set(word_part.split(" ")) <= prefixes
        runs = char_part.split(", ")
        assert len(runs) == 2 and all(len(r) == 3 for r in runs)
        assert set("".join(runs)) <= set(string.ascii_lowercase + string.digits)
    custom = waffle_descriptors(["cat"], seed=0, pairs=2, words=["zebra"], characters="x")
    assert custom == ["zeb", "xxxx", "zeb", "xxxx"]


def test_waffle_head_is_deterministic_varies_with_seed_and_averages_seeds(
    model, encoder, features
) -> None:
    head = waffle_head(encoder, CLASSES, seeds=[0], pairs=2)
    again = waffle_head(encoder, CLASSES, seeds=[0], pairs=2)
    other = waffle_head(encoder, CLASSES, seeds=[1], pairs=2)
    both = waffle_head(encoder, CLASSES, seeds=[0, 1], pairs=2)
    assert torch.equal(head.logits(features), again.logits(features))
    assert not torch.allclose(head.logits(features), other.logits(features))
    torch.testing.assert_close(
        both.logits(features),
        (head.logits(features) + other.logits(features)) / 2,
        rtol=0,
        atol=1e-6,
    )
    assert both.provenance["num_prompts"] == len(CLASSES) * 2 * 2 * 2
    assert both.provenance["seeds"] == [0, 1] and both.provenance["method"] == "waffle"


def test_waffle_head_scores_the_mean_over_shared_random_prompts(
    model, tokenizer, features, encoder
):
    descriptors = waffle_descriptors(CLASSES, seed=5, pairs=1)
    head = waffle_head(encoder, CLASSES, seeds=[5], pairs=1)
    f = F.normalize(features, dim=-1)
    prompts = [
        [f"A photo of a {c}, {descriptor_sentence(d)}." for d in descriptors] for c in CLASSES
    ]
    e = embed(model, tokenizer, [p for row in prompts for p in row])
    expected = torch.stack([torch.stack([f @ e[p] for p in row]).mean(0) for row in prompts], dim=1)
    torch.testing.assert_close(head.logits(features), expected, rtol=0, atol=1e-6)


def test_waffle_errors() -> None:
    with pytest.raises(TypeError, match="seed must be an int"):
        waffle_descriptors(CLASSES, seed="1")
    with pytest.raises(ValueError, match="pairs must be at least 1"):
        waffle_descriptors(CLASSES, seed=0, pairs=0)
    with pytest.raises(ValueError, match="character pool is empty"):
        waffle_descriptors(CLASSES, seed=0, characters="")
    with pytest.raises(ValueError, match="word pool is empty"):
        waffle_descriptors(CLASSES, seed=0, words=[])


# ---------------------------------------------------------------- CuPL


def test_cupl_head_is_the_normalised_mean_of_each_class_prompts(
    model, tokenizer, tmp_path, encoder
):
    prompts = {
        "cat": ["A cat is a small furry pet.", "A photo of a cat sleeping."],
        "dog": ["A dog wags its tail."],
        "bird": ["A bird has feathers.", "Birds fly.", "A small bird on a branch."],
    }
    loaded = load_class_prompts(write(tmp_path / "cupl.json", json.dumps(prompts)))
    head = cupl_head(encoder, CLASSES, loaded, source="cupl.json")
    e = embed(model, tokenizer, [p for c in CLASSES for p in prompts[c]])
    expected = torch.stack(
        [F.normalize(torch.stack([e[p] for p in prompts[c]]).mean(0), dim=0) for c in CLASSES]
    )  # (C, D)
    torch.testing.assert_close(head.weights, expected, rtol=0, atol=1e-6)
    assert head.scoring == "dot" and head.provenance["num_prompts"] == 6
    with pytest.raises(ValueError, match=r"cupl\.json: no prompts for class 'cow'"):
        cupl_head(encoder, ["cat", "cow"], loaded, source="cupl.json")


# ---------------------------------------------------------------- files and ensembles


@pytest.fixture(scope="module")
def two_heads(model, encoder) -> tuple[ZeroShotHead, ZeroShotHead]:
    clip_head = template_head(encoder, CLASSES, TEMPLATES, model_name="tiny")
    dclip = descriptor_head(encoder, CLASSES, DESCRIPTORS, model_name="tiny")
    return clip_head, dclip


def assert_same_head(a: ZeroShotHead, b: ZeroShotHead) -> None:
    assert a.classnames == b.classnames and a.scoring == b.scoring
    assert a.provenance == b.provenance
    for name in ("weights", "prompt_embeddings", "prompt_class"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or (torch.equal(x, y) and x.dtype == y.dtype)


def test_save_load_round_trip_is_exact(two_heads, tmp_path, features) -> None:
    clip_head, dclip = two_heads
    for index, head in enumerate((clip_head, dclip)):
        save_head(head, tmp_path / f"h{index}.safetensors")
        loaded = load_head(tmp_path / f"h{index}.safetensors")
        assert_same_head(head, loaded)
        assert torch.equal(head.logits(features), loaded.logits(features))
    ensemble = HeadEnsemble((clip_head, dclip, clip_head), head_weights=(0.1, 0.7, 0.2))
    save_head(ensemble, tmp_path / "e.safetensors")
    loaded = load_head(tmp_path / "e.safetensors")
    assert isinstance(loaded, HeadEnsemble) and loaded.head_weights == (0.1, 0.7, 0.2)
    for a, b in zip(ensemble.heads, loaded.heads, strict=True):
        assert_same_head(a, b)
    assert torch.equal(ensemble.logits(features), loaded.logits(features))


def test_load_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no zero-shot head file at .*none\.st"):
        load_head(tmp_path / "none.st")
    with pytest.raises(ValueError, match=r"junk\.st is not a clipforge zero-shot head file"):
        load_head(write(tmp_path / "junk.st", "not safetensors"))
    save_file({"weights": torch.eye(2)}, str(tmp_path / "plain.st"))
    with pytest.raises(ValueError, match=r"plain\.st is not a clipforge zero-shot head file"):
        load_head(tmp_path / "plain.st")
    header = json.dumps(
        {
            "format_version": 1,
            "kind": "head",
            "classnames": ["a"],
            "scoring": "dot",
            "provenance": {},
        }
    )
    save_file(
        {"weights": torch.eye(2)},
        str(tmp_path / "rows.st"),
        metadata={"clipforge.zeroshot": header},
    )
    with pytest.raises(ValueError, match=r"rows\.st: malformed .*2 rows for 1 class names"):
        load_head(tmp_path / "rows.st")


def test_logit_ensemble_is_the_weighted_mean_of_logits(two_heads, features) -> None:
    clip_head, dclip = two_heads
    expected = 0.25 * clip_head.logits(features) + 0.75 * dclip.logits(features)
    ensemble = HeadEnsemble((clip_head, dclip), head_weights=(1.0, 3.0))
    torch.testing.assert_close(ensemble.logits(features), expected, rtol=0, atol=1e-6)
    equal = HeadEnsemble((clip_head, dclip)).logits([features, features * 2])
    torch.testing.assert_close(
        equal, (clip_head.logits(features) + dclip.logits(features)) / 2, rtol=0, atol=1e-6
    )


def test_weight_average_renormalises_the_weighted_sum(two_heads, features) -> None:
    clip_head, dclip = two_heads
    mixed = average_weights((clip_head, dclip), head_weights=(1.0, 3.0))
    expected = F.normalize(0.25 * clip_head.weights + 0.75 * dclip.weights, dim=-1)
    torch.testing.assert_close(mixed.weights, expected, rtol=0, atol=1e-6)
    assert mixed.scoring == "dot" and mixed.provenance["method"] == "weight_average"
    assert mixed.provenance["model"] == "tiny" and len(mixed.provenance["members"]) == 2


def test_ensemble_errors(two_heads, features) -> None:
    clip_head, dclip = two_heads
    reordered = ZeroShotHead(("dog", "cat", "bird"), clip_head.weights[[1, 0, 2]])
    with pytest.raises(ValueError, match=r"head 1 classes differ.*class 0 is 'dog', not 'cat'"):
        HeadEnsemble((clip_head, reordered))
    fewer = ZeroShotHead(("cat", "dog"), clip_head.weights[:2])
    with pytest.raises(ValueError, match=r"head 1 classes differ.*2 classes, not 3"):
        average_weights((clip_head, fewer))
    with pytest.raises(ValueError, match="2 head weights for 1 heads"):
        HeadEnsemble((clip_head,), head_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="positive and finite"):
        average_weights((clip_head, dclip), head_weights=(1.0, -1.0))
    with pytest.raises(ValueError, match="at least one head"):
        HeadEnsemble(())
    other_model = ZeroShotHead(CLASSES, clip_head.weights, provenance={"model": "other"})
    with pytest.raises(ValueError, match="different models"):
        average_weights((clip_head, other_model))
    with pytest.raises(ValueError, match="pass one image-feature tensor per head"):
        HeadEnsemble((clip_head, other_model)).logits(features)
    assert HeadEnsemble((clip_head, other_model)).logits([features, features]).shape == (5, 3)
    wide = ZeroShotHead(CLASSES, F.normalize(torch.randn(3, 8), dim=-1))
    with pytest.raises(ValueError, match="different dimensions"):
        average_weights((clip_head, wide))


def test_head_validation_errors(features) -> None:
    unit = F.normalize(torch.randn(3, 4), dim=-1)
    with pytest.raises(ValueError, match="row 1 has norm 2.0000"):
        ZeroShotHead(CLASSES, torch.cat([unit[:1], 2 * unit[1:2], unit[2:]]))
    with pytest.raises(ValueError, match="2 rows for 3 class names"):
        ZeroShotHead(CLASSES, unit[:2])
    with pytest.raises(ValueError, match=r"duplicate class name 'cat' at positions 0 and 2"):
        ZeroShotHead(("cat", "dog", "cat"), unit)
    with pytest.raises(ValueError, match="unknown scoring 'max'"):
        ZeroShotHead(CLASSES, unit, scoring="max")
    with pytest.raises(ValueError, match="go with scoring='mean_similarity' only"):
        ZeroShotHead(CLASSES, unit, prompt_embeddings=unit, prompt_class=torch.arange(3))
    with pytest.raises(ValueError, match="class 'bird' has no prompt embeddings"):
        ZeroShotHead(
            CLASSES,
            unit,
            scoring="mean_similarity",
            prompt_embeddings=unit[:2],
            prompt_class=torch.tensor([0, 1]),
        )
    with pytest.raises(ValueError, match="JSON-serialisable"):
        ZeroShotHead(CLASSES, unit, provenance={"model": object()})
    with pytest.raises(ValueError, match="image features have dimension 128, the head 4"):
        ZeroShotHead(CLASSES, unit).logits(features)
