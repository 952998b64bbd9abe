"""FAISS index of an embedded collection: choice, build, tuning, sharding, round trip, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipforge.search import index as index_module
from clipforge.search import layout, vectors
from clipforge.search.collection import Collection
from clipforge.search.index import (
    Point,
    SearchIndex,
    build_index,
    choose,
    held_out_queries,
    load_index,
    sweep,
)
from clipforge.search.index_choice import GIB, KINDS, plan_index
from clipforge.search.vectors import VectorSource

DIM = 32
N_QUERIES = 300
SLACK_MS = 1000.0  # latency budget for tests: the shared test machine's timings are noise


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def near(v: np.ndarray, rng: np.random.Generator, eps: float = 0.1) -> np.ndarray:
    """A unit vector at cosine ~1/sqrt(1 + eps^2) from unit ``v``."""
    noise = unit(rng.standard_normal(v.shape))
    return unit(v + eps * noise)


def write_collection(
    root: Path, parts: list[np.ndarray], *, text: list[np.ndarray] | None = None
) -> Path:
    """A collection laid out as ``clipforge embed`` writes it: float16 vectors, metadata, stats."""
    for sub in (layout.IMG_DIR, layout.TEXT_DIR, layout.META_DIR, layout.STATS_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    info = {"model": "test", "pretrained": None, "dim": parts[0].shape[1]}
    (root / layout.INFO_FILE).write_text(json.dumps(info))
    offset = 0
    for n, x in enumerate(parts):
        np.save(layout.emb_path(root, n, "image"), x.astype(np.float16))
        if text is not None:
            np.save(layout.emb_path(root, n, "text"), text[n].astype(np.float16))
        keys = [f"key{offset + i}" for i in range(len(x))]
        empty = [None] * len(x)
        table = pa.table({"key": keys, "path": keys, "member": pa.array(empty, pa.string()),
                          "caption": pa.array(empty, pa.string()),
                          "json": pa.array(empty, pa.string())})  # fmt: skip
        pq.write_table(table, layout.metadata_path(root, n))
        layout.stats_path(root, n).write_text(json.dumps({"count": len(x)}))
        offset += len(x)
    return root


def stored(root: Path, modality: str = "image") -> np.ndarray:
    """Every stored vector of the collection as float32 (n, D), ids = row numbers."""
    parts = layout.complete_partitions(root)
    return np.concatenate(
        [np.load(layout.emb_path(root, n, modality)).astype(np.float32) for n in parts]
    )


@pytest.fixture(autouse=True)
def _one_thread():
    """FAISS's OpenMP threads spin-wait; on a shared 2-core machine two of them crawl."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """10.5k random unit vectors in 3 partitions, with 20 planted groups of 4 near copies.

    Returns the collection, the queries (20, D) (fresh perturbations of each group's anchor)
    and the ids (20, 4) of each group, spread over the partitions.
    """
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((10500, DIM)))
    anchors = unit(rng.standard_normal((20, DIM)))
    groups = rng.choice(len(x), size=(20, 4), replace=False)
    for anchor, ids in zip(anchors, groups, strict=True):
        x[ids] = [near(anchor, rng) for _ in ids]
    queries = np.stack([near(a, rng) for a in anchors])
    root = write_collection(tmp_path_factory.mktemp("planted"), np.split(x, 3))
    return root, queries, groups


@pytest.fixture(scope="module", params=KINDS)
def built(request, planted, tmp_path_factory) -> tuple[Path, dict]:
    """The planted collection's index of each kind, built once (recall target 0.9)."""
    root = planted[0]
    out = tmp_path_factory.mktemp(request.param)
    info = build_index(root, out, kind=request.param, recall_target=0.9, n_queries=N_QUERIES,
                       latency_budget_ms=SLACK_MS)  # fmt: skip
    return out, info


@pytest.fixture()
def small(tmp_path) -> Path:
    """3 partitions of 1000 random unit vectors."""
    x = unit(np.random.default_rng(1).standard_normal((3000, DIM)))
    return write_collection(tmp_path / "small", np.split(x, 3))


# --- choice -----------------------------------------------------------------------------------


def test_auto_picks_flat_while_an_exact_scan_fits_the_latency_budget():
    most = math.floor(10.0 * 2.5e6 / 512)  # floats scanned per query <= budget * rate
    assert plan_index(most, 512).kind == "flat"
    assert plan_index(most + 1, 512).kind == "hnsw"
    assert plan_index(most + 1, 512, latency_budget_ms=20.0).kind == "flat"


def test_auto_goes_hnsw_then_ivf_flat_then_ivf_pq_as_memory_runs_out():
    assert plan_index(1_000_000, 512).kind == "hnsw"  # 1M x (2048 + 8 + 269) B fits 4 GiB
    plan = plan_index(1_000_001, 512)
    assert (plan.kind, plan.factory) == ("ivf-flat", f"IVF{round(4 * math.sqrt(1_000_001))},Flat")
    big = plan_index(10_000_000, 512, memory_budget_gb=4.0)
    nlist = round(4 * math.sqrt(10_000_000))
    fixed = nlist * 4 * 512 + 4 * 512 * 512 + 4 * 256 * 512  # centroids, OPQ matrix, codebooks
    for budget_gb, expected in ((4.0, 64), (0.5, 32)):
        m = plan_index(10_000_000, 512, memory_budget_gb=budget_gb).pq_m
        fits = [m for m in (64, 32, 16) if 10_000_000 * (m + 8) + fixed <= budget_gb * GIB]
        assert m == fits[0] == expected  # D / 8 at most: 8 dims per sub-quantizer
    assert big.kind == "ivf-pq" and big.factory == f"OPQ64,IVF{nlist},PQ64x8np"
    assert big.sharded  # above 2M vectors
    assert big.memory_bytes_estimate <= 4 * GIB


def test_ivf_sizes_follow_four_sqrt_n_with_forty_training_points_per_list():
    plan = plan_index(1_000_000, 512, kind="ivf-flat")
    assert (plan.nlist, plan.train_size, plan.fallbacks) == (4000, 40 * 4000, ())
    assert plan_index(1_000_000, 512, kind="ivf-pq").train_size == 160_000
    assert plan_index(100_000, 512, kind="ivf-pq").train_size == 40 * 1265
    few_lists = plan_index(100_000, 512, kind="ivf-pq", nlist=100)
    assert few_lists.train_size == 2**14  # PQ wants 64 points per code, whatever nlist


def test_impossible_requests_fall_back_and_say_so():
    few = plan_index(1000, 32, kind="ivf-flat")
    assert few.nlist == 1000 // 40 and "nlist lowered from 126 to 25" in few.fallbacks[0]
    pq = plan_index(5000, 32, kind="ivf-pq")
    assert pq.kind == "ivf-flat" and "ivf-pq needs >= 9984 training vectors" in pq.fallbacks[0]
    tiny = plan_index(30, 32, kind="ivf-flat")
    assert tiny.kind == "flat" and "building flat" in tiny.fallbacks[0]
    over = plan_index(1_000_000, 512, kind="flat", memory_budget_gb=1.0)
    assert over.kind == "flat" and "over the 1 GiB memory budget" in over.fallbacks[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "annoy"}, "unknown index kind 'annoy'"),
        ({"kind": "ivf-pq", "pq_m": 7}, "pq_m=7 does not divide the dimension 512"),
        ({"kind": "hnsw", "sharded": True}, "sharded builds need an IVF kind"),
        ({"memory_budget_gb": 0.0}, "memory_budget_gb must be > 0"),
        ({"nlist": 0}, "nlist must be a positive integer"),
        ({"memory_budget_gb": 0.001}, "no index fits memory_budget_gb=0.001"),
    ],
)
def test_bad_plans_raise_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_index(10_000_000, 512, **kwargs)


# --- built indices ----------------------------------------------------------------------------


def test_every_kind_finds_the_planted_neighbours(built, planted):
    out, info = built
    _, queries, groups = planted
    index = load_index(out)
    assert (index.ntotal, index.dim, info["kind"]) == (10500, DIM, info["requested_kind"])
    scores, ids = index.search(queries, 4)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (20, 4)
    for found, group in zip(ids, groups, strict=True):
        assert set(found) == set(group)


def test_recorded_recall_matches_a_brute_force_count(built, planted):
    out, info = built
    root, k = planted[0], 10
    held_ids = held_out_queries(VectorSource.from_collection(root), N_QUERIES, k, 0).ids
    x = stored(root)
    q = x[held_ids]
    exact = q @ x.T  # (q, n)
    exact[np.arange(len(q)), held_ids] = -np.inf  # a query's own row is not its neighbour
    kth = -np.sort(-exact, axis=1)[:, k - 1]  # k-th best exact score
    _, ids = load_index(out).search(q, k + 1)
    found = [row[row != self][:k] for row, self in zip(ids, held_ids, strict=True)]
    hits = [np.sum(exact[i, f[f >= 0]] >= kth[i] - 1e-5) for i, f in enumerate(found)]
    assert info["recall_at_10"] == pytest.approx(np.mean(np.minimum(hits, k)) / k, abs=1e-9)
    if info["kind"] == "flat":
        assert info["recall_at_10"] == 1.0


def test_tuning_picks_the_smallest_setting_meeting_the_target(built):
    _, info = built
    if info["kind"] == "flat":  # no knob
        return
    if info["kind"] == "ivf-pq":  # 4-byte codes of 32-d vectors cannot reach 0.9
        assert not info["target_met"] and "not met" in info["warnings"][0]
        assert info["recall_at_10"] == max(p["recall"] for p in info["tuning"])
        return
    assert info["target_met"] and info["recall_at_10"] >= 0.9 and not info["warnings"]
    ((param, value),) = info["search_params"].items()
    assert param == {"hnsw": "efSearch"}.get(info["kind"], "nprobe")
    recall = {p["value"]: p["recall"] for p in info["tuning"]}
    assert recall[value] == info["recall_at_10"]
    assert value == min(recall) or recall[value - 1] < 0.9  # one less misses the target


def fake_measure(recall, latency_ms=lambda v: 0.1):
    """A knob measurement from formulas, and the list of values it was asked for."""
    calls = []

    def measure(value):
        calls.append(value)
        ms = latency_ms(value)
        return Point(value, recall(value), {"mean": ms, "p50": ms, "p99": ms})

    return measure, calls


def test_sweep_doubles_then_bisects_down_to_the_smallest_value_reaching_the_target():
    measure, calls = fake_measure(lambda v: min(1.0, v / 100))  # reaches 0.95 at v = 95
    tuning = choose("nprobe", sweep(measure, 1, 1000, 0.95, 10.0), 0.95, 10.0)
    assert (tuning.chosen.value, tuning.target_met, tuning.warning) == (95, True, None)
    assert calls[:8] == [1, 2, 4, 8, 16, 32, 64, 128] and calls[-1] in (94, 95)


def test_sweep_stops_on_a_recall_plateau_and_keeps_the_smallest_best_value():
    measure, calls = fake_measure(lambda v: min(0.7, v / 10))  # flat from v = 7
    tuning = choose("nprobe", sweep(measure, 1, 1000, 0.95, 10.0), 0.95, 10.0)
    assert calls == [1, 2, 4, 8, 16, 32]  # 8 -> 32 gained nothing: stop
    assert (tuning.chosen.value, tuning.target_met) == (8, False)
    assert "recall target 0.95 within 10.0 ms/query not met" in tuning.warning


def test_sweep_stops_when_too_slow_and_keeps_the_best_value_within_budget():
    measure, calls = fake_measure(lambda v: v / 100, latency_ms=lambda v: float(v))
    tuning = choose("efSearch", sweep(measure, 1, 1000, 0.95, 10.0), 0.95, 10.0)
    assert calls == [1, 2, 4, 8, 16]  # 16 ms > 10 ms: larger values are slower still
    assert (tuning.chosen.value, tuning.search_params) == (8, {"efSearch": 8})


def test_info_records_the_build(built, planted):
    out, info = built
    assert json.loads((out / "index_info.json").read_text()) == info
    assert info["partitions"] == [0, 1, 2] and info["partition_rows"] == [3500] * 3
    assert info["embeddings"] == str(planted[0].resolve()) and info["index_file"] == "image.index"
    for key in ("factory", "latency_ms_mean", "latency_ms_p99", "memory_bytes_estimate",
                "build_seconds", "clipforge_version", "created"):  # fmt: skip
        assert info[key] is not None, key
    if info["kind"] == "ivf-pq":
        assert info["factory"] == "OPQ4,IVF262,PQ4x8np"  # 8 dims per sub-quantizer
        assert "nlist lowered from 410 to 262" in info["fallbacks"][0]


def test_load_applies_the_tuned_parameters(built):
    out, info = built
    index = load_index(out).index
    if info["kind"].startswith("ivf"):
        assert faiss.extract_index_ivf(index).nprobe == info["search_params"]["nprobe"]
    if info["kind"] == "hnsw":
        hnsw = faiss.downcast_index(faiss.downcast_index(index).index).hnsw
        assert hnsw.efSearch == info["search_params"]["efSearch"]


def test_vectors_are_added_one_partition_at_a_time(small, tmp_path, monkeypatch):
    calls = []
    original = index_module.add_chunk

    def counting(index, ids, x):
        calls.append(ids.copy())
        original(index, ids, x)

    monkeypatch.setattr(index_module, "add_chunk", counting)
    build_index(small, tmp_path / "ix", kind="ivf-flat", n_queries=50)
    assert len(calls) == 3
    for part, ids in enumerate(calls):
        assert np.array_equal(ids, np.arange(1000 * part, 1000 * (part + 1)))


@pytest.mark.parametrize(("kind", "n", "dim"), [("ivf-flat", 3000, 16), ("ivf-pq", 10_000, 16)])
def test_sharded_build_equals_one_built_in_one_go(kind, n, dim, tmp_path):
    rng = np.random.default_rng(2)
    root = write_collection(tmp_path / "c", np.split(unit(rng.standard_normal((n, dim))), 4))
    common = {"kind": kind, "n_queries": 50, "seed": 3}
    one = build_index(root, tmp_path / "one", sharded=False, **common)
    sharded = build_index(root, tmp_path / "sharded", sharded=True, **common)
    assert (one["sharded"], sharded["sharded"]) == (False, True)
    assert not (tmp_path / "sharded" / ".image.shards").exists()
    queries = unit(rng.standard_normal((100, dim)))
    a, b = load_index(tmp_path / "one"), load_index(tmp_path / "sharded")
    for index in (a, b):  # compare at one setting
        faiss.ParameterSpace().set_index_parameter(index.index, "nprobe", 4)
    for k in (1, 10):
        np.testing.assert_array_equal(a.search(queries, k)[1], b.search(queries, k)[1])
        np.testing.assert_array_equal(a.search(queries, k)[0], b.search(queries, k)[0])


def test_text_index_skips_zero_rows_and_keeps_global_ids(tmp_path):
    rng = np.random.default_rng(4)
    image = unit(rng.standard_normal((2000, DIM)))
    text = unit(rng.standard_normal((2000, DIM)))
    empty = rng.choice(2000, 300, replace=False)
    text[empty] = 0.0
    root = write_collection(tmp_path / "c", np.split(image, 2), text=np.split(text, 2))
    info = build_index(root, tmp_path / "ix", modality="text", kind="hnsw", n_queries=50)
    assert (info["ntotal"], info["skipped_zero_rows"], info["total_rows"]) == (1700, 300, 2000)
    assert info["index_file"] == "text.index"
    index = load_index(tmp_path / "ix")
    keep = np.setdiff1d(np.arange(2000), empty)
    _, ids = index.search(text[keep[:50]], 1)
    assert np.array_equal(ids[:, 0], keep[:50])
    _, every = load_index(tmp_path / "ix").search(text[keep[:3]], 1700)
    assert not np.isin(every, empty).any()


def test_opening_a_text_collection_reads_no_rows(tmp_path, monkeypatch):
    """A server opens a collection of millions of rows: its zero rows are found by a build."""
    x = unit(np.random.default_rng(5).standard_normal((100, DIM)))
    root = write_collection(tmp_path / "c", [x], text=[x])
    monkeypatch.setattr(vectors, "_nonzero_rows", lambda arr: pytest.fail("rows were scanned"))
    collection = Collection(root, modality="text")
    assert collection.vectors(np.array([3])).shape == (1, DIM)


def test_unreachable_target_keeps_the_best_setting_and_warns(small, tmp_path):
    info = build_index(small, tmp_path / "ix", kind="ivf-flat", latency_budget_ms=1e-6,
                       n_queries=50)  # fmt: skip
    assert info["target_met"] is False and "not met" in info["warnings"][0]
    assert info["recall_at_10"] == max(p["recall"] for p in info["tuning"])


def test_flat_over_a_tiny_collection_and_k_bounds(tmp_path):
    x = unit(np.random.default_rng(5).standard_normal((5, DIM)))
    info = build_index(write_collection(tmp_path / "c", [x]), tmp_path / "ix", n_queries=5)
    assert info["kind"] == "flat" and info["recall_k"] == 4 and info["recall_at_10"] == 1.0
    index = load_index(tmp_path / "ix")
    scores, ids = index.search(x, 5)
    assert np.array_equal(ids[:, 0], np.arange(5))
    np.testing.assert_allclose(scores, np.sort(x @ x.T, axis=1)[:, ::-1], atol=2e-3)
    for k in (0, 6, 2.0, True):
        with pytest.raises(ValueError, match=r"k must be an integer in \[1, 5\]"):
            index.search(x, k)


# --- errors -----------------------------------------------------------------------------------


def test_search_rejects_queries_of_the_wrong_shape(small, tmp_path):
    build_index(small, tmp_path / "ix", kind="flat", n_queries=10)
    index = load_index(tmp_path / "ix")
    with pytest.raises(
        ValueError, match=f"queries have dimension 8, the index has dimension {DIM}"
    ):
        index.search(np.zeros((2, 8), np.float32), 1)
    with pytest.raises(ValueError, match="2-D array"):
        index.search(np.zeros(DIM, np.float32), 1)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((1, DIM), np.nan, np.float32), 1)


def test_load_errors_name_the_path(small, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none" / "index_info.json")):
        load_index(tmp_path / "none")
    out = tmp_path / "ix"
    build_index(small, out, kind="flat", n_queries=10)
    info_text = (out / "index_info.json").read_text()
    (out / "image.index").write_bytes(b"not an index at all")
    with pytest.raises(ValueError, match=f"{out / 'image.index'}: not a readable FAISS index"):
        load_index(out)
    (out / "image.index").unlink()
    with pytest.raises(FileNotFoundError, match=str(out / "image.index")):
        load_index(out)
    (out / "index_info.json").write_text("{broken")
    with pytest.raises(ValueError, match=f"{out / 'index_info.json'}: not valid JSON"):
        load_index(out)
    (out / "index_info.json").write_text(json.dumps({"kind": "flat"}))
    with pytest.raises(ValueError, match="missing keys"):
        load_index(out)
    build_index(small, out, kind="flat", n_queries=10)
    (out / "index_info.json").write_text(info_text.replace('"ntotal": 3000', '"ntotal": 2999'))
    with pytest.raises(ValueError, match=f"holds 3000 vectors of dimension {DIM} but"):
        load_index(out)


def test_build_errors_name_the_input(small, tmp_path):
    with pytest.raises(FileNotFoundError, match="embed_info.json is missing"):
        build_index(tmp_path / "nothing", tmp_path / "ix")
    for stats in (small / layout.STATS_DIR).iterdir():
        stats.rename(stats.with_suffix(".tmp"))
    with pytest.raises(ValueError, match="no complete partitions"):
        build_index(small, tmp_path / "ix")
    x = unit(np.random.default_rng(6).standard_normal((100, DIM)))
    root = write_collection(tmp_path / "c", [x])
    with pytest.raises(FileNotFoundError, match=str(layout.emb_path(root, 0, "text"))):
        build_index(root, tmp_path / "ix", modality="text")
    with pytest.raises(ValueError, match="recall_target must be in"):
        build_index(root, tmp_path / "ix", recall_target=0.0)
    np.save(layout.emb_path(root, 0, "image"), (3 * x).astype(np.float16))
    with pytest.raises(
        ValueError, match=f"{layout.emb_path(root, 0, 'image')}: row 0 has L2 norm 3"
    ):
        build_index(root, tmp_path / "ix")


def test_search_index_wraps_any_faiss_index():
    flat = faiss.IndexIDMap(faiss.IndexFlatIP(4))
    flat.add_with_ids(np.eye(4, dtype=np.float32), np.array([10, 11, 12, 13]))
    index = SearchIndex(flat, {"kind": "flat"})
    lims, scores, ids = index.range_search(np.eye(4, dtype=np.float32)[:2], 1.0)
    assert lims.tolist() == [0, 1, 2] and ids.tolist() == [10, 11] and scores.tolist() == [1, 1]
