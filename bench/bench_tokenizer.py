"""Throughput of clipforge's CLIP tokenizer against OpenCLIP's pure-Python SimpleTokenizer.

Both tokenizers see the same deterministic, varied English captions in the same process:
(a) batch calls and (b) single-text calls. Each timed pass uses captions neither tokenizer
has seen (new seed), after one warm-up pass, so word caches help the way they would on a
real caption stream: common words hit, rare names and number/punctuation combinations miss.

OpenCLIP must be installed without its dependencies
(``pip install --no-deps open_clip_torch==3.3.0``); importing the ``open_clip`` package
needs torchvision, so only its ``tokenizer.py`` file is loaded.

Usage: python bench/bench_tokenizer.py [--captions 4096] [--batch-size 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import torch

from clipforge.tokenizer import Tokenizer


def words(text: str, sep: str | None = None) -> list[str]:
    """A word list written as one string (``sep`` for multi-word entries)."""
    return text.split(sep)


COLOURS = words(
    "red green blue yellow orange purple pink brown black white grey gray beige teal navy "
    "maroon olive turquoise golden silver crimson violet lavender magenta ivory"
)
SIZES = words("small large tiny huge big little medium giant miniature tall short long wide")
ADJECTIVES = words(
    "old new shiny rusty wooden plastic metal glass broken vintage modern fluffy wet dry "
    "dirty clean bright dark blurry colorful striped spotted empty crowded quiet busy "
    "ancient abandoned cozy elegant rustic smiling sleeping running happy tired curious "
    "wild frozen sunny foggy snowy handmade antique wrinkled polished cracked"
)
OBJECTS = words(
    "cat dog horse bird car bus truck bicycle motorcycle boat train airplane chair table "
    "sofa bed lamp clock vase cup mug bottle plate bowl spoon fork knife pizza sandwich "
    "apple banana orange carrot broccoli cake donut laptop keyboard phone television "
    "book backpack umbrella handbag suitcase kite skateboard surfboard guitar piano violin "
    "tree flower bench fence bridge building house church castle tower lighthouse "
    "mountain river lake beach forest field street road sign window door staircase "
    "elephant giraffe zebra bear tiger lion monkey rabbit squirrel fox deer owl eagle "
    "parrot penguin dolphin whale shark turtle frog butterfly bee spider snail star "
    "square circle triangle cube sphere cylinder pyramid hexagon teapot kettle basket "
    "candle mirror painting poster statue fountain tent kayak canoe tractor scooter "
    "helmet jacket scarf hat boots sneakers dress shirt sweater necklace ring watch"
)
PEOPLE = words(
    "man woman boy girl child toddler chef farmer doctor nurse student teacher musician "
    "artist skier surfer cyclist runner dancer soldier police officer fisherman couple"
)
ACTIONS = words(
    "sitting by|standing near|running past|jumping over|walking|sleeping next to|eating|"
    "playing with|reading about|riding|holding|carrying|watching|looking at|leaning on|"
    "lying on|climbing|swimming towards|flying over|parked next to|hanging from|floating on",
    "|",
)
PLACES = words(
    "in a park|on the beach|in the kitchen|on a busy street|in the snow|at night|"
    "in a living room|on a wooden table|in front of a building|under a tree|"
    "near the river|in the mountains|at the market|in a forest|on the grass|"
    "in a parking lot|at the airport|on a rooftop|in a classroom|at sunset",
    "|",
)
POSITIONS = words(
    "on the left of|on the right of|above|below|next to|behind|in front of|on top of|"
    "inside|beside|between two",
    "|",
)
TEMPLATES = (
    "a photo of a {adj} {colour} {obj} {pos} a {colour2} {obj2}.",
    "a {size} {colour} {obj} {pos} a {size2} {colour2} {obj2}",
    "A {person} {action} a {colour} {obj} {place}.",
    "{count} {colour} {obj}s {place}",
    "close-up of a {adj} {obj}, {place}",
    "{Name}'s {adj} {obj} {place}, photographed in {year}.",
    "a {adj} {person} with a {colour} {obj} ({year})",
    "Two {obj}s and a {obj2} {place}; the {obj} is {colour}.",
    "an image of {count} {adj} {obj}s {pos} the {obj2}",
    "{Name} {Name2} {action} a {obj} {place} - {count} photos",
    "a {colour} and {colour2} {obj} isn't {pos} the {obj2}!",
    "{adj} {obj} for sale, only ${price} - free shipping",
    "painting of a {size} {obj} {place} by {Name} {Name2}",
    "a photo of the {adj} {obj}.",
    "there are {count} {obj}s {pos} a {adj} {obj2}, and it's {adj2}",
)
SYLLABLES = words("ka ri mo ta le vo zu ne shi an der berg ton el mar ix quo ra vin sa lo")


def make_captions(count: int, seed: int) -> list[str]:
    """Deterministic varied captions; names and numbers keep the word vocabulary open-ended."""
    rng = random.Random(seed)

    def name() -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()

    captions = []
    for _ in range(count):
        fields = {
            "adj": rng.choice(ADJECTIVES),
            "adj2": rng.choice(ADJECTIVES),
            "colour": rng.choice(COLOURS),
            "colour2": rng.choice(COLOURS),
            "size": rng.choice(SIZES),
            "size2": rng.choice(SIZES),
            "obj": rng.choice(OBJECTS),
            "obj2": rng.choice(OBJECTS),
            "person": rng.choice(PEOPLE),
            "action": rng.choice(ACTIONS),
            "place": rng.choice(PLACES),
            "pos": rng.choice(POSITIONS),
            "count": str(rng.randint(2, 120)),
            "year": str(rng.randint(1890, 2025)),
            "price": f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}",
            "Name": name(),
            "Name2": name(),
        }
        caption = rng.choice(TEMPLATES).format(**fields)
        if rng.random() < 0.1:
            caption = caption.capitalize()
        captions.append(caption)
    return captions


def load_openclip_tokenizer_module() -> ModuleType:
    """Load ``open_clip/tokenizer.py`` alone: the package ``__init__`` needs torchvision."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("open_clip is not installed: pip install --no-deps open_clip_torch==3.3.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("openclip_tokenizer", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def time_batches(
    tokenize: Callable[[Sequence[str]], torch.Tensor], captions: list[str], batch_size: int
) -> float:
    """Texts per second when tokenizing ``captions`` in batches of ``batch_size``."""
    start = time.perf_counter()
    for offset in range(0, len(captions), batch_size):
        tokenize(captions[offset : offset + batch_size])
    return len(captions) / (time.perf_counter() - start)


def time_singles(tokenize: Callable[[str], torch.Tensor], captions: list[str]) -> float:
    """Texts per second when tokenizing ``captions`` one call per text."""
    start = time.perf_counter()
    for caption in captions:
        tokenize(caption)
    return len(captions) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=4096, help="captions per timed pass")
    parser.add_argument("--singles", type=int, default=1024, help="captions per single-call pass")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes (median reported)")
    parser.add_argument("--context-length", type=int, default=77)
    args = parser.parse_args()

    openclip = load_openclip_tokenizer_module().SimpleTokenizer(context_length=args.context_length)
    ours = Tokenizer(context_length=args.context_length)

    warmup = make_captions(args.captions, seed=0)
    if not torch.equal(openclip(warmup), ours(warmup)):
        raise SystemExit("ids differ from OpenCLIP on the warm-up captions")

    batch_rates: dict[str, list[float]] = {"openclip": [], "clipforge": []}
    single_rates: dict[str, list[float]] = {"openclip": [], "clipforge": []}
    for repeat in range(1, args.repeats + 1):
        captions = make_captions(args.captions, seed=repeat)
        singles = make_captions(args.singles, seed=1000 + repeat)
        contenders = [("openclip", openclip), ("clipforge", ours)]
        if repeat % 2 == 0:
            contenders.reverse()
        for label, tokenizer in contenders:
            batch_rates[label].append(time_batches(tokenizer, captions, args.batch_size))
            single_rates[label].append(time_singles(tokenizer, singles))

    print(
        f"captions per pass: {args.captions} (batches of {args.batch_size}), "
        f"{args.singles} single calls; context length {args.context_length}; "
        f"median of {args.repeats} passes on unseen captions"
    )
    for title, rates in (("(a) batch", batch_rates), ("(b) single", single_rates)):
        theirs = statistics.median(rates["openclip"])
        mine = statistics.median(rates["clipforge"])
        print(
            f"{title:>11}: openclip {theirs:>10,.0f} texts/s | clipforge {mine:>10,.0f} texts/s"
            f" | ratio {mine / theirs:5.1f}x"
        )


if __name__ == "__main__":
    main()
