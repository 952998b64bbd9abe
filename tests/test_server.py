"""The search server: the HTTP contract, every bad input as a 4xx, image serving, dedup, metrics.

Most tests run against a hand-made collection whose vectors are chosen (two near-duplicate
pairs, rows in two partitions plus an incomplete third, images in files, in a tar shard, and
behind paths that escape the image root) so each answer can be checked against numpy. One
module fixture runs the real pipeline (shapes images -> ``embed_collection`` -> ``build_index``
-> a YAML config -> ``create_app``) with a saved ``tiny`` model.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from PIL import Image

import clipforge
from clipforge.data.shapes import write_shapes
from clipforge.search import layout
from clipforge.search.embed import embed_collection
from clipforge.search.index import build_index
from clipforge.search.server import Metrics, create_app, single_index_config
from clipforge.search.server_config import ServerConfigError, load_server_config
from clipforge.search.service import near_duplicate_free
from clipforge.tokenizer import get_tokenizer
from clipforge.transforms import image_transform

DIM = 128  # the tiny model's embedding width
MAX_K = 50


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return clipforge.save_model(clipforge.create_model("tiny"), tmp_path_factory.mktemp("model"))


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _handmade_vectors() -> np.ndarray:
    """(8, DIM) unit vectors: row 1 ~ row 0 (cos ~0.995), row 5 ~ row 4, the rest random."""
    rng = np.random.default_rng(0)
    vectors = _unit(rng.standard_normal((8, DIM)))
    vectors[1] = _unit(vectors[0] + 0.1 * _unit(rng.standard_normal(DIM)))
    vectors[5] = _unit(vectors[4] + 0.1 * _unit(rng.standard_normal(DIM)))
    return vectors.astype(np.float16)


def _write_partition(root: Path, partition: int, vectors: np.ndarray, rows: list[dict]) -> None:
    for directory in (layout.IMG_DIR, layout.META_DIR, layout.STATS_DIR):
        (root / directory).mkdir(parents=True, exist_ok=True)
    np.save(layout.emb_path(root, partition, "image"), vectors)
    columns = ("key", "path", "member", "caption", "json")
    table = pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in columns})
    pq.write_table(table, layout.metadata_path(root, partition))
    layout.stats_path(root, partition).write_text(json.dumps({"count": len(rows)}))


@pytest.fixture(scope="module")
def handmade(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict:
    """A collection written by hand following layout.py, and a flat index over it."""
    base = tmp_path_factory.mktemp("handmade")
    images = base / "images"
    images.mkdir()
    (images / "a.png").write_bytes(_png((255, 0, 0)))
    (images / "b.jpg").write_bytes(_jpeg((0, 0, 255)))
    (images / "c.png").write_bytes(_png((0, 255, 0)))
    (base / "secret.jpg").write_bytes(_jpeg((9, 9, 9)))
    (images / "link.jpg").symlink_to(base / "secret.jpg")
    member_bytes = _jpeg((255, 255, 0))
    with tarfile.open(images / "shard.tar", "w") as tar:
        for name, data in (("k3.txt", b"from a shard"), ("k3.jpg", member_bytes)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    rows = [
        {"key": "a", "path": str(images / "a.png"), "caption": "a red square",
         "json": json.dumps({"width": 16, "colour": "red"})},
        {"key": "b", "path": str(images / "b.jpg"), "caption": "a blue square"},
        {"key": "k3", "path": str(images / "shard.tar"), "member": "k3.jpg",
         "caption": "from a shard"},
        {"key": "link", "path": str(images / "link.jpg"), "caption": "symlink out"},
        {"key": "dotdot", "path": str(images / ".." / "secret.jpg"), "caption": "dot-dot out"},
        {"key": "etc", "path": "/etc/hostname", "caption": "absolute out"},
        {"key": "missing", "path": str(images / "missing.jpg"), "caption": "gone"},
        {"key": "rel", "path": "c.png", "caption": "relative path"},
    ]  # fmt: skip
    vectors = _handmade_vectors()
    emb = base / "emb"
    _write_partition(emb, 0, vectors[:4], rows[:4])
    _write_partition(emb, 1, vectors[4:], rows[4:])
    # Partition 2 has no stats file: incomplete, so neither indexed nor served.
    np.save(layout.emb_path(emb, 2, "image"), vectors[:2])
    info = {"model": str(model_dir), "pretrained": None, "dim": DIM,
            "image_roots": [str(images)]}  # fmt: skip
    (emb / layout.INFO_FILE).write_text(json.dumps(info))
    build_index(emb, base / "index", kind="flat")
    return {"base": base, "emb": emb, "index": base / "index", "images": images,
            "vectors": vectors.astype(np.float32), "member_bytes": member_bytes}  # fmt: skip


@pytest.fixture(scope="module")
def client(handmade: dict) -> TestClient:
    config = {"indices": {"hand": {"index": str(handmade["index"])}}, "max_k": MAX_K,
              "max_upload_mb": 0.05, "default_k": 5}  # fmt: skip
    with TestClient(create_app(config)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tiny_model(model_dir: Path) -> torch.nn.Module:
    return clipforge.create_model(str(model_dir)).eval()


def _search(client: TestClient, **body) -> dict:
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def _error(response, status: int, *fragments: str) -> dict:
    """Assert a JSON error body of the given status whose message holds every fragment."""
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) == {"error", "detail"}
    for fragment in fragments:
        assert fragment in body["error"], (fragment, body["error"])
    return body


# --------------------------------------------------------------------------- service endpoints


def test_health_indices_and_items(client: TestClient, handmade: dict, model_dir: Path) -> None:
    assert client.get("/health").json()["status"] == "ok"
    (summary,) = client.get("/indices").json()["indices"]
    assert summary["name"] == "hand"
    assert (summary["size"], summary["dim"], summary["model"]) == (8, DIM, str(model_dir))
    item = client.get("/items/0").json()
    assert item["key"] == "a" and item["caption"] == "a red square"
    assert item["metadata"] == {"width": 16, "colour": "red"}
    assert item["path"] == "a.png" and "member" not in item
    shard_item = client.get("/items/2").json()
    assert (shard_item["path"], shard_item["member"]) == ("shard.tar", "k3.jpg")
    assert client.get("/items/7?index=hand").json()["key"] == "rel"  # partition 1, row 3


def test_images_served_from_files_and_tar_members(client: TestClient, handmade: dict) -> None:
    png = client.get("/images/0")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == (handmade["images"] / "a.png").read_bytes()
    assert client.get("/images/1").headers["content-type"] == "image/jpeg"
    member = client.get("/images/2")
    assert member.headers["content-type"] == "image/jpeg"
    assert member.content == handmade["member_bytes"]
    assert client.get("/images/7").content == (handmade["images"] / "c.png").read_bytes()


@pytest.mark.parametrize("item_id", [3, 4, 5, 6])
def test_images_outside_the_roots_or_missing_are_404(client: TestClient, item_id: int) -> None:
    """Symlink out, ``..`` out, absolute path elsewhere, missing file: all 404, no bytes."""
    _error(client.get(f"/images/{item_id}"), 404, f"id {item_id}")


def test_search_by_embedding_ranks_by_cosine(client: TestClient, handmade: dict) -> None:
    vectors = handmade["vectors"]
    query = np.random.default_rng(1).standard_normal(DIM)
    answer = _search(client, embedding=query.tolist(), k=8)
    expected = _unit(vectors) @ _unit(query)  # cosine of the stored (fp16) vectors
    order = np.argsort(-expected)
    assert [r["id"] for r in answer["results"]] == order.tolist()
    got = np.array([r["score"] for r in answer["results"]])
    np.testing.assert_allclose(got, expected[order], atol=1e-5)
    assert answer["query"] == {**answer["query"], "kind": "embedding", "index": "hand", "k": 8}
    assert answer["warnings"] == []
    first = answer["results"][0]
    assert set(first) >= {"id", "score", "key", "caption", "metadata"}


def test_default_k_and_k_beyond_the_index(client: TestClient, handmade: dict) -> None:
    query = handmade["vectors"][2].tolist()
    assert len(_search(client, embedding=query)["results"]) == 5  # default_k
    assert len(_search(client, embedding=query, k=MAX_K)["results"]) == 8  # all there is


def test_search_by_id_returns_the_item_first(client: TestClient) -> None:
    answer = _search(client, id=4, k=3)
    ids = [r["id"] for r in answer["results"]]
    assert ids[:2] == [4, 5]  # itself, then its near-duplicate
    assert answer["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert answer["query"]["id"] == 4


def test_dedup_drops_near_duplicates_of_higher_results(client: TestClient, handmade: dict) -> None:
    vectors = _unit(handmade["vectors"])
    assert vectors[0] @ vectors[1] >= 0.98 > max(abs(vectors[0] @ vectors[j]) for j in (2, 3))
    plain = _search(client, id=0, k=4)
    assert [r["id"] for r in plain["results"]][:2] == [0, 1]
    deduped = _search(client, id=0, k=4, dedup=True)
    ids = [r["id"] for r in deduped["results"]]
    assert ids[0] == 0 and 1 not in ids and len(ids) == 4
    assert ids == [i for i in [r["id"] for r in _search(client, id=0, k=8)["results"]]
                   if i != 1][:4]  # fmt: skip
    assert deduped["query"]["dedup_removed"] == 1


def test_near_duplicate_free_is_greedy_in_rank_order() -> None:
    e = np.eye(3, dtype=np.float32)
    rows = np.stack([e[0], _unit(e[0] + 0.01 * e[1]), e[1], _unit(e[1] + 0.01 * e[2]), e[2]])
    assert near_duplicate_free(rows, 0.98) == [0, 2, 4]
    assert near_duplicate_free(rows, 1.0) == [0, 1, 2, 3, 4]  # only exact copies at 1.0


def test_search_by_text_matches_the_model(client: TestClient, handmade: dict, tiny_model) -> None:
    text = "a red square on the left"
    answer = _search(client, text=text, k=8)
    tokens = get_tokenizer(tiny_model)([text])
    with torch.no_grad():
        query = F.normalize(tiny_model.encode_text(tokens), dim=-1)[0].numpy()
    expected = _unit(handmade["vectors"]) @ query
    got = {r["id"]: r["score"] for r in answer["results"]}
    np.testing.assert_allclose([got[i] for i in range(8)], expected, atol=1e-4)
    assert answer["query"]["text"] == text and answer["warnings"] == []


def test_text_longer_than_the_context_is_truncated_with_a_warning(client: TestClient) -> None:
    answer = _search(client, text=" ".join(["star"] * 100), k=2)
    (warning,) = answer["warnings"]
    assert "truncated" in warning and "32" in warning  # tiny's context length


def _image_vector(model: torch.nn.Module, image: Image.Image) -> np.ndarray:
    pixels = image_transform(model.image_size)(image).unsqueeze(0)
    with torch.no_grad():
        return F.normalize(model.encode_image(pixels), dim=-1)[0].numpy()


def test_search_by_base64_and_uploaded_image_agree(client, handmade: dict, tiny_model) -> None:
    data = _png((200, 30, 30))
    by_json = _search(client, image=base64.b64encode(data).decode(), k=8)
    data_url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert _search(client, image=data_url, k=8)["results"] == by_json["results"]
    upload = client.post("/search", files={"image": ("q.png", data, "image/png")},
                         data={"k": "8", "index": "hand"})  # fmt: skip
    assert upload.status_code == 200, upload.text
    assert upload.json()["results"] == by_json["results"]
    expected = _unit(handmade["vectors"]) @ _image_vector(tiny_model, Image.open(io.BytesIO(data)))
    got = {r["id"]: r["score"] for r in by_json["results"]}
    np.testing.assert_allclose([got[i] for i in range(8)], expected, atol=1e-4)
    assert by_json["query"]["image_bytes"] == len(data)


def test_multipart_fields_are_converted(client: TestClient, handmade: dict) -> None:
    embedding = json.dumps(handmade["vectors"][0].tolist())
    answer = client.post("/search", data={"embedding": embedding, "k": "3", "dedup": "true"})
    assert answer.status_code == 200, answer.text
    assert 1 not in [r["id"] for r in answer.json()["results"]]
    _error(client.post("/search", data={"id": "0", "k": "three"}), 422, "'k'")
    _error(client.post("/search", data={"id": "0", "dedup": "maybe"}), 422, "'dedup'")
    _error(client.post("/search", data={"image": "abc"}), 422, "file part named 'image'")


# --------------------------------------------------------------------------- bad input -> 4xx


def test_malformed_and_non_object_json_is_400(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    _error(client.post("/search", content=b'{"text": ', headers=headers), 400, "malformed JSON")
    _error(client.post("/search", content=b"[1, 2]", headers=headers), 400, "object, got list")
    _error(client.post("/search", content=b"\xff\xfe", headers=headers), 400, "malformed JSON")


def test_wrong_content_type_is_415(client: TestClient) -> None:
    response = client.post("/search", content=b"text=a", headers={"content-type": "text/plain"})
    _error(response, 415, "text/plain")


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({}, ["exactly one of text, image, embedding, id", "got none"]),
        ({"k": 3}, ["got none"]),
        ({"text": "a", "embedding": [1.0] * DIM}, ["got text and embedding"]),
        ({"text": "a", "id": 1, "image": "AAAA"}, ["got text and image and id"]),
        ({"text": "   "}, ["text is empty"]),
        ({"text": 5}, ["text"]),
        ({"embedding": [0.0] * DIM}, ["all zeros"]),
        ({"embedding": []}, ["embedding is empty"]),
        ({"embedding": ["x"] * DIM}, ["embedding.0"]),
        ({"text": "a", "k": "5"}, ["k: "]),
        ({"text": "a", "k": 2.5}, ["k: "]),
        ({"text": "a", "dedup": "yes"}, ["dedup"]),
        ({"text": "a", "colour": "red"}, ["colour", "Extra inputs"]),
    ],
)
def test_invalid_requests_are_422_naming_the_field(client, body: dict, fragments: list) -> None:
    _error(client.post("/search", json=body), 422, *fragments)


def test_non_finite_embedding_is_422(client: TestClient) -> None:
    body = b'{"embedding": [NaN' + b", 1.0" * (DIM - 1) + b"]}"
    response = client.post("/search", content=body, headers={"content-type": "application/json"})
    _error(response, 422, "non-finite", "[0]")


def test_text_over_the_character_limit_is_422(client: TestClient) -> None:
    _error(client.post("/search", json={"text": "a" * 20_001}), 422, "20001 characters", "20000")


def test_wrong_embedding_dimension_names_both(client: TestClient) -> None:
    _error(client.post("/search", json={"embedding": [1.0, 2.0, 3.0]}), 422,
           "dimension 3", f"dimension {DIM}", "'hand'")  # fmt: skip


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1])
def test_k_out_of_range_names_the_range(client: TestClient, k: int) -> None:
    body = _error(client.post("/search", json={"id": 0, "k": k}), 422, f"k={k}", f"[1, {MAX_K}]")
    assert body["detail"] == {"field": "k", "min": 1, "max": MAX_K}


def test_unknown_index_and_id_are_404(client: TestClient) -> None:
    body = _error(client.post("/search", json={"index": "nope", "id": 0}), 404, "'nope'", "hand")
    assert body["detail"]["known"] == ["hand"]
    _error(client.post("/search", json={"id": 8}), 404, "id 8", "0..7")
    _error(client.get("/items/8"), 404, "id 8")
    _error(client.get("/items/-1"), 404, "id -1")
    _error(client.get("/images/99"), 404, "id 99")
    _error(client.get("/items/0?index=nope"), 404, "'nope'")
    _error(client.get("/items/abc"), 422, "item_id")
    _error(client.get("/no/such/route"), 404)


def test_invalid_base64_is_400(client: TestClient) -> None:
    _error(client.post("/search", json={"image": "not base64!!"}), 400, "base64")
    _error(client.post("/search", json={"image": "data:image/png;base64"}), 400, "data: URL")


def test_non_image_uploads_are_415(client: TestClient) -> None:
    text = base64.b64encode(b"hello, not an image").decode()
    _error(client.post("/search", json={"image": text}), 415, "not an image")
    files = {"image": ("notes.txt", b"hello, not an image", "text/plain")}
    _error(client.post("/search", files=files), 415, "not an image")
    _error(client.post("/search", files={"image": ("e.png", b"", "image/png")}), 415, "empty")


def test_oversized_uploads_are_413_with_the_limit(client: TestClient) -> None:
    limit = int(0.05 * 2**20)
    big = np.random.default_rng(0).integers(0, 255, limit + 10, dtype=np.uint8).tobytes()
    body = _error(client.post("/search", files={"image": ("big.png", big, "image/png")}), 413,
                  str(limit))  # fmt: skip
    assert body["detail"]["limit_bytes"] >= limit
    body = _error(client.post("/search", json={"image": base64.b64encode(big).decode()}), 413,
                  f"limit of {limit} bytes")  # fmt: skip
    assert body["detail"] == {"limit_bytes": limit, "size_bytes": len(big)}
    huge = b'{"text": "' + b"a " * (2 * limit) + b'"}'
    _error(client.post("/search", content=huge, headers={"content-type": "application/json"}),
           413, "request body")  # fmt: skip


# --------------------------------------------------------------------------- metrics, docs, page


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}\{{(.*)\}} (\S+)", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match.group(1))) == labels:
            return float(match.group(2))
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


def test_metrics_count_requests_and_report_index_sizes(client: TestClient) -> None:
    before = client.get("/metrics").text
    route = {"route": "/search", "method": "POST"}
    try:
        ok_before = _metric(before, "clipforge_http_requests_total", **route, status="200")
    except AssertionError:
        ok_before = 0.0
    for _ in range(3):
        _search(client, id=1, k=2)
    client.post("/search", json={})
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert _metric(text, "clipforge_http_requests_total", **route, status="200") == ok_before + 3
    assert _metric(text, "clipforge_http_requests_total", **route, status="422") >= 1
    count = _metric(text, "clipforge_http_request_duration_seconds_count", route="/search")
    inf = _metric(text, "clipforge_http_request_duration_seconds_bucket", route="/search",
                  le="+Inf")  # fmt: skip
    assert count == inf >= 4
    assert _metric(text, "clipforge_index_vectors", index="hand") == 8
    assert _metric(text, "clipforge_index_dim", index="hand") == DIM
    assert _metric(text, "clipforge_search_queries_total", index="hand", kind="id") >= 3
    assert _metric(text, "clipforge_http_requests_total", route="/items/{item_id}", method="GET",
                   status="200") >= 1  # fmt: skip


def test_histogram_buckets_are_cumulative() -> None:
    metrics = Metrics(buckets=(0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 3.0):
        metrics.observe_request("/x", "GET", 200, seconds)
    text = metrics.render({"i": {"vectors": 2, "dim": 4}})
    bucket = "clipforge_http_request_duration_seconds_bucket"
    assert [_metric(text, bucket, route="/x", le=le) for le in ("0.1", "1.0", "+Inf")] == [2, 3, 4]
    assert _metric(text, "clipforge_http_request_duration_seconds_sum", route="/x") == 3.65
    assert "# TYPE clipforge_http_request_duration_seconds histogram" in text


def test_docs_openapi_and_page_are_served_offline(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs-fallback.js" in docs.text
    schema = client.get("/openapi.json").json()
    content = schema["paths"]["/search"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    page = client.get("/")
    assert page.status_code == 200 and 'id="search-form"' in page.text
    assert "http://" not in page.text and "https://" not in page.text
    for name in ("app.js", "style.css", "docs-fallback.js"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and "https://" not in asset.text


# --------------------------------------------------------------------------- config


def test_several_indices_share_a_model(handmade: dict) -> None:
    config = {"indices": {"one": {"index": str(handmade["index"])},
                          "two": {"index": str(handmade["index"]),
                                  "embeddings": str(handmade["emb"])}}}  # fmt: skip
    app = create_app(config)
    indices = app.state.service.indices
    assert indices["one"].encoder is indices["two"].encoder
    with TestClient(app) as several:
        body = _error(several.post("/search", json={"id": 0}), 422, "several indices")
        assert body["detail"]["known"] == ["one", "two"]
        assert _search(several, id=0, index="two", k=1)["results"][0]["id"] == 0
        assert [s["name"] for s in several.get("/indices").json()["indices"]] == ["one", "two"]


def test_config_file_relative_paths_and_errors(tmp_path: Path, handmade: dict) -> None:
    relative = os.path.relpath(handmade["index"], tmp_path)
    (tmp_path / "serve.yaml").write_text(f"indices:\n  hand:\n    index: {relative}\nmax_k: 7\n")
    config = load_server_config(tmp_path / "serve.yaml")
    assert Path(config.indices["hand"].index) == handmade["index"].resolve()
    assert config.max_k == 7 and config.max_upload_mb == 8.0
    cases = [
        ({"indices": {}}, "config.indices"),
        ({"indices": {"a": {"index": "x"}}, "max_kk": 3}, "max_kk"),
        ({"indices": {"a": {"index": "x", "modle": "tiny"}}}, "config.indices.a: unknown key"),
        ({"indices": {"a": {}}}, "config.indices.a.index is missing"),
        ({"indices": {"a b": {"index": "x"}}}, "index name 'a b'"),
        ({"indices": {"a": {"index": "x"}}, "max_k": "many"}, "config.max_k='many'"),
        ({"indices": {"a": {"index": "x"}}, "max_k": 0}, "config.max_k=0"),
        ({"indices": {"a": {"index": "x"}}, "default_k": 2000}, "config.default_k=2000"),
        ({"indices": {"a": {"index": "x"}}, "max_upload_mb": -1}, "config.max_upload_mb=-1"),
        ({"indices": {"a": {"index": "x"}}, "dedup_threshold": 1.5}, "dedup_threshold=1.5"),
    ]
    for data, message in cases:
        with pytest.raises(ServerConfigError, match=re.escape(message)):
            load_server_config(data)
    (tmp_path / "bad.yaml").write_text("indices: [unclosed\n")
    with pytest.raises(ServerConfigError, match="bad.yaml: cannot parse"):
        load_server_config(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        load_server_config(tmp_path / "nowhere.yaml")


def test_loading_mismatches_fail_clearly(tmp_path: Path, handmade: dict) -> None:
    with pytest.raises(FileNotFoundError, match="no-index"):
        create_app({"indices": {"a": {"index": str(tmp_path / "no-index")}}})
    other = tmp_path / "other"
    vectors = handmade["vectors"].astype(np.float16)
    _write_partition(other, 0, vectors[:3], [{"key": str(i)} for i in range(3)])
    (other / layout.INFO_FILE).write_text(json.dumps({"model": "tiny", "dim": DIM}))
    spec = {"index": str(handmade["index"]), "embeddings": str(other)}
    with pytest.raises(ValueError, match=r"partitions \[1\] are not complete"):
        create_app({"indices": {"a": spec}})
    _write_partition(other, 1, vectors[3:5], [{"key": str(i)} for i in range(2)])
    with pytest.raises(ValueError, match=r"built over 8 rows .* holds 5"):
        create_app({"indices": {"a": spec}})
    _write_partition(other, 1, vectors[3:8], [{"key": str(i)} for i in range(4)])
    with pytest.raises(
        ValueError, match=r"metadata_00001.parquet has 4 rows but its embeddings have 5"
    ):
        create_app({"indices": {"a": spec}})
    spec = {"index": str(handmade["index"]), "model": str(tmp_path / "no-model")}
    with pytest.raises(FileNotFoundError, match=r"indices\.a: cannot load the query model"):
        create_app({"indices": {"a": spec}})
    narrow = clipforge.get_model_config("tiny").to_dict() | {"embed_dim": 64}
    (tmp_path / "narrow.json").write_text(json.dumps(narrow))
    spec = {"index": str(handmade["index"]), "model": str(tmp_path / "narrow.json")}
    with pytest.raises(ValueError, match="embeds to dimension 64 but the index has dimension 128"):
        create_app({"indices": {"a": spec}})


def test_single_index_config_names_the_index_after_its_folder(handmade: dict) -> None:
    config = load_server_config(single_index_config(handmade["index"], max_k=9))
    assert list(config.indices) == ["index"] and config.max_k == 9


# --------------------------------------------------------------------------- the real pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict:
    """Shapes images as a CSV + folder and as tar shards, each embedded by embed_collection
    with the saved tiny model and indexed by build_index, served from one YAML config."""
    base = tmp_path_factory.mktemp("pipeline")
    write_shapes(base / "folder", 24, format="csv")
    write_shapes(base / "shards", 8, format="wds", shard_size=4)
    sources = {"shapes": [str(base / "folder" / "captions.csv")],
               "shards": [str(base / "shards" / "{00000..00001}.tar")]}  # fmt: skip
    for name, inputs in sources.items():
        embed_collection(inputs, base / f"{name}-emb", model=str(model_dir), num_workers=0,
                         batch_size=16, progress=False)  # fmt: skip
        build_index(base / f"{name}-emb", base / f"{name}-index", kind="flat")
    build_index(base / "shapes-emb", base / "captions-index", kind="flat", modality="text")
    (base / "serve.yaml").write_text(
        "indices:\n  shapes:\n    index: shapes-index\n  shards:\n    index: shards-index\n"
        "  captions:\n    index: captions-index\n"
    )
    return {"base": base, "config": base / "serve.yaml"}


@pytest.fixture(scope="module")
def real(pipeline: dict) -> TestClient:
    with TestClient(create_app(pipeline["config"])) as test_client:
        yield test_client


def test_real_text_search_serves_captions_and_images(real: TestClient, pipeline: dict) -> None:
    assert real.app.state.service.indices["shapes"].encoder is (
        real.app.state.service.indices["shards"].encoder
    )
    answer = _search(real, index="shapes", text="a large red star", k=5)
    assert len(answer["results"]) == 5
    scores = [r["score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True)
    top = answer["results"][0]
    assert top["caption"] and top["path"].startswith("images/")
    assert top["metadata"]["key"] == top["key"]
    image = real.get(f"/images/{top['id']}?index=shapes")
    assert image.headers["content-type"] == "image/jpeg"
    assert image.content == (pipeline["base"] / "folder" / top["path"]).read_bytes()


def test_real_image_queries_find_the_item_itself(real: TestClient, pipeline: dict) -> None:
    for item_id in (0, 13):
        by_id = _search(real, index="shapes", id=item_id, k=3)["results"]
        assert by_id[0]["id"] == item_id and by_id[0]["score"] == pytest.approx(1.0, abs=2e-3)
    path = pipeline["base"] / "folder" / real.get("/items/13?index=shapes").json()["path"]
    files = {"image": (path.name, path.read_bytes(), "image/jpeg")}
    upload = real.post("/search", files=files, data={"index": "shapes", "k": "3"})
    assert upload.status_code == 200, upload.text[:500]
    first = upload.json()["results"][0]
    assert first["id"] == 13 and first["score"] == pytest.approx(1.0, abs=2e-3)


def test_real_webdataset_images_come_from_tar_members(real: TestClient, pipeline: dict) -> None:
    item = real.get("/items/5?index=shards").json()
    assert item["path"] == "00001.tar" and item["member"].endswith(".jpg")
    with tarfile.open(pipeline["base"] / "shards" / "00001.tar") as tar:
        expected = tar.extractfile(item["member"]).read()
    image = real.get("/images/5?index=shards")
    assert image.status_code == 200 and image.content == expected
    assert image.headers["content-type"] == "image/jpeg"


def test_real_caption_index_searches_caption_vectors(real: TestClient, pipeline: dict) -> None:
    """An index of the caption vectors: an id query uses the item's caption vector."""
    (summary,) = [s for s in real.get("/indices").json()["indices"] if s["name"] == "captions"]
    assert summary["size"] == 24
    answer = _search(real, index="captions", id=4, k=3)
    assert answer["results"][0]["id"] == 4
    assert answer["results"][0]["score"] == pytest.approx(1.0, abs=2e-3)
    caption = real.get("/items/4?index=captions").json()["caption"]
    assert _search(real, index="captions", text=caption, k=1)["results"][0]["id"] == 4


def test_a_different_model_than_the_embedding_is_refused(pipeline: dict) -> None:
    """``tiny`` by name is a fresh random model: same width, other weights, meaningless scores."""
    spec = {"index": str(pipeline["base"] / "shapes-index"), "model": "tiny"}
    torch.manual_seed(1)  # the saved model was initialised from seed 0
    with pytest.raises(ValueError, match="are not those that embedded"):
        create_app({"indices": {"shapes": spec}})
