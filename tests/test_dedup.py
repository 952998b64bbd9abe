"""Near-duplicate groups over a collection with planted exact copies, near copies and a chain."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest

from clipforge.search.dedup import dedup_collection, near_duplicate_groups
from clipforge.search.index import SearchIndex, build_index, load_index
from test_index import _one_thread, near, stored, unit, write_collection  # noqa: F401

DIM = 32
THRESHOLD = 0.95
EXPECTED = [[10, 20], [30, 705, 1500], [100, 800, 1600], [300, 1000, 2000]]


def rotated(e1: np.ndarray, e2: np.ndarray, cos: float) -> np.ndarray:
    """The unit vector at cosine ``cos`` from ``e1`` in the plane of orthonormal e1, e2."""
    return cos * e1 + np.sqrt(1 - cos**2) * e2


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """2100 random unit vectors (32-d: unrelated pairs stay below cosine ~0.75) in 3 partitions.

    Planted at threshold 0.95: an exact pair in one partition, an exact triple across all three,
    three near copies (pairwise cosine ~0.99), and a chain 300~1000~2000 whose links have
    cosine 0.965 while its ends have 0.863; plus a pair at 0.93 that must stay apart.
    """
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((2100, DIM)))
    x[20] = x[10]
    x[[705, 1500]] = x[30]
    anchor = unit(rng.standard_normal(DIM))
    x[[100, 800, 1600]] = [near(anchor, rng) for _ in range(3)]
    e1, e2 = np.linalg.qr(rng.standard_normal((DIM, 4)))[0].T[:2]
    x[300], x[1000] = e1, rotated(e1, e2, 0.965)
    x[2000] = rotated(e1, e2, 2 * 0.965**2 - 1)  # twice the angle: cos 2a = 2 cos^2 a - 1
    f1, f2 = np.linalg.qr(rng.standard_normal((DIM, 4)))[0].T[2:]
    x[400], x[1400] = f1, rotated(f1, f2, 0.93)
    return write_collection(tmp_path_factory.mktemp("dups"), np.split(x, 3))


def test_planted_vectors_have_the_intended_cosines(collection):
    x = stored(collection)
    assert x[10] @ x[20] == pytest.approx(1.0, abs=2e-3)
    assert min(x[100] @ x[800], x[800] @ x[1600]) > 0.97
    assert min(x[300] @ x[1000], x[1000] @ x[2000]) > THRESHOLD > x[300] @ x[2000] + 0.05
    assert 0.92 < x[400] @ x[1400] < THRESHOLD
    unrelated = x @ x.T - np.eye(len(x)) * 2
    unrelated[np.ix_(sum(EXPECTED, []) + [400, 1400], sum(EXPECTED, []) + [400, 1400])] = 0
    assert unrelated.max() < 0.8


def test_range_search_finds_every_planted_group_and_nothing_else(collection):
    assert near_duplicate_groups(collection, THRESHOLD) == EXPECTED


def test_knn_search_and_arrays_give_the_same_groups(collection):
    assert near_duplicate_groups(collection, THRESHOLD, k=3) == EXPECTED
    assert near_duplicate_groups(stored(collection), THRESHOLD) == EXPECTED


def test_a_lower_threshold_joins_the_near_miss_pair(collection):
    assert near_duplicate_groups(collection, 0.92) == sorted([*EXPECTED, [400, 1400]])


def test_a_built_index_finds_the_same_groups(collection, tmp_path):
    build_index(collection, tmp_path / "ix", kind="ivf-flat", recall_target=0.99,
                latency_budget_ms=1000.0, n_queries=200)  # fmt: skip
    index = load_index(tmp_path / "ix")
    assert near_duplicate_groups(collection, THRESHOLD, index=index) == EXPECTED
    assert near_duplicate_groups(collection, THRESHOLD, k=4, index=index) == EXPECTED


class ClaimsRowZero(SearchIndex):
    """An exact index that also claims row 0 is a perfect match for every query."""

    def range_search(self, queries, min_score):
        lims, scores, ids = super().range_search(queries, min_score)
        starts = lims[:-1]  # prepend id 0 with score 1 to every query's results
        lims = lims + np.arange(len(lims))
        return lims, np.insert(scores, starts, 1.0), np.insert(ids, starts, 0)


def test_proposals_of_an_approximate_index_are_checked_exactly(collection):
    x = stored(collection)
    flat = faiss.IndexIDMap(faiss.IndexFlatIP(DIM))
    flat.add_with_ids(x, np.arange(len(x)))
    liar = ClaimsRowZero(flat, {"kind": "test"})
    lims, _, ids = liar.range_search(x[[10, 11]], THRESHOLD)
    assert ids[lims[:-1]].tolist() == [0, 0] and ids[1] == 10  # the lie is there to catch
    assert near_duplicate_groups(collection, THRESHOLD, index=liar) == EXPECTED


def test_dedup_collection_writes_groups_with_keys(collection, tmp_path):
    summary = dedup_collection(collection, tmp_path / "dups.parquet", THRESHOLD)
    assert (summary["groups"], summary["duplicates"], summary["vectors"]) == (4, 7, 2100)
    table = pq.read_table(tmp_path / "dups.parquet").to_pydict()
    assert table["id"] == sum(EXPECTED, [])
    assert table["group"] == [g for g, ids in enumerate(EXPECTED) for _ in ids]
    assert table["key"] == [f"key{i}" for i in table["id"]]
    assert table["keep"] == [i == ids[0] for ids in EXPECTED for i in ids]
    dedup_collection(collection, tmp_path / "dups.json", THRESHOLD, k=5)
    written = json.loads((tmp_path / "dups.json").read_text())
    assert [g["ids"] for g in written["groups"]] == EXPECTED
    assert written["groups"][0]["keys"] == ["key10", "key20"] and written["k"] == 5


def test_bad_arguments_name_the_input(collection, tmp_path):
    with pytest.raises(ValueError, match="threshold is a cosine similarity in"):
        near_duplicate_groups(collection, 1.5)
    with pytest.raises(ValueError, match="k must be a positive integer or None"):
        near_duplicate_groups(collection, THRESHOLD, k=0)
    with pytest.raises(ValueError, match=r"dups.csv: output must end in one of"):
        dedup_collection(collection, tmp_path / "dups.csv", THRESHOLD)
    with pytest.raises(ValueError, match=r"expected a 2-D float array"):
        near_duplicate_groups(np.arange(10), THRESHOLD)
    other = write_collection(tmp_path / "other", [unit(np.ones((50, 8)))])
    build_index(other, tmp_path / "ix", kind="flat", n_queries=10)
    with pytest.raises(ValueError, match="holds 50 vectors of dimension 8 but the embeddings"):
        near_duplicate_groups(collection, THRESHOLD, index=load_index(tmp_path / "ix"))
