"""The embedder as clients see it: real server processes, real models, real gRPC, no mocks.

Servers, each started once for this module (fixture names):
- `embedder`: minilm, efficientnet-lite0 and a tiny randomly initialised CLIP (tests/fixtures/
  tiny_clip.json, registered through VITRINE_EMBEDDER_CLIP_CONFIG); file URIs allowed under the
  paintings folder. Most tests use it.
- `mpnet_stub`: the real all-mpnet-base-v2 alone (those tests are marked slow).
- `clip_checkpoint_stub`: the tiny CLIP loaded from a state_dict file this module saved (the
  "local checkpoint a cluster mounts" path).
- `failed_starts`: bad configurations, each of which must stop the process with a clear message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.server
import io
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FIXTURES, SHARED_DATA
from tests.servers import ServiceProcess, running_service, start_service
from tests.unit.test_images import png_bomb
from vitrine.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

PAINTINGS = SHARED_DATA / "paintings"
PAINTING_FILES = sorted((PAINTINGS / "images").glob("*.jpg"))
TINY_CLIP_CONFIG = FIXTURES / "tiny_clip.json"
TINY_CLIP = TINY_CLIP_CONFIG.stem  # open_clip names a registered config after its file
EFFNET = "efficientnet-lite0"
# Every server here: CPU float32 (vectors are compared with ones computed in this process, and
# must not depend on whether the machine has a GPU), and no proxy for the local web server.
BASE_ENV = {"VITRINE_EMBEDDER_DEVICE": "cpu", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


# --- helpers -------------------------------------------------------------------------------------


def rows(response: Any) -> np.ndarray:
    return np.array([v.values for v in response.vectors], dtype=np.float32)


def image(data: bytes | None = None, uri: str | None = None) -> common_pb2.Image:
    return common_pb2.Image(data=data) if uri is None else common_pb2.Image(uri=uri)


def painting_bytes(index: int = 0) -> bytes:
    return PAINTING_FILES[index].read_bytes()


def by_id(painting_id: str) -> Path:
    return PAINTINGS / "images" / f"{painting_id}.jpg"


def crop_png(path: Path, box: tuple[float, float, float, float]) -> bytes:
    picture = Image.open(path).convert("RGB")
    w, h = picture.size
    buffer = io.BytesIO()
    picture.crop((int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h))).save(buffer, "PNG")
    return buffer.getvalue()


def assert_unit_rows(vectors: np.ndarray, dimension: int) -> None:
    assert vectors.shape[1] == dimension
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert np.isfinite(vectors).all()


def metric(url: str, name: str, **labels: str) -> float:
    """One sample from a server's /metrics (0 when the series does not exist yet)."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def stub_for(service: ServiceProcess) -> Iterator[embedder_pb2_grpc.EmbedderServiceStub]:
    with grpc.insecure_channel(service.address) as channel:
        yield embedder_pb2_grpc.EmbedderServiceStub(channel)


# --- servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> Iterator[ServiceProcess]:
    env = {
        "VITRINE_EMBEDDER_MODELS": f"minilm,{EFFNET},clip",
        "VITRINE_EMBEDDER_CLIP_MODEL": TINY_CLIP,
        "VITRINE_EMBEDDER_CLIP_CONFIG": str(TINY_CLIP_CONFIG),
        "VITRINE_EMBEDDER_IMAGE_ROOTS": str(PAINTINGS / "images"),
        "VITRINE_EMBEDDER_FETCH_TIMEOUT_S": "5",
        **BASE_ENV,
    }
    with running_service("embedder", env) as service:
        yield service


@pytest.fixture(scope="module")
def stub(embedder: ServiceProcess) -> Iterator[embedder_pb2_grpc.EmbedderServiceStub]:
    yield from stub_for(embedder)


def assert_still_serving(embedder: ServiceProcess, stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    assert embedder.process.poll() is None, f"embedder died; log:\n{embedder.log_tail()}"
    assert embedder.health() == health_pb2.HealthCheckResponse.SERVING
    answer = stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="minilm", texts=["still here"]), timeout=30)
    assert len(answer.vectors) == 1 and answer.dimension == 384


# --- real MPNet ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mpnet_stub() -> Iterator[embedder_pb2_grpc.EmbedderServiceStub]:
    with running_service("embedder", {"VITRINE_EMBEDDER_MODELS": "mpnet", **BASE_ENV}) as service:
        yield from stub_for(service)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("anchor", "near", "far"),
    [
        ("a sailing ship in a storm", "boat on a rough sea", "portrait of an old woman"),
        ("a bowl of fruit on a table", "still life with apples and pears", "cavalry charging in battle"),
        ("the crucifixion of Christ", "Jesus dying on the cross", "a windmill in a flat landscape"),
        ("a snowy winter landscape", "skaters on a frozen river", "a nude reclining on a couch"),
    ],
)
def test_mpnet_puts_related_texts_closer(
    mpnet_stub: embedder_pb2_grpc.EmbedderServiceStub, anchor: str, near: str, far: str
) -> None:
    answer = mpnet_stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="mpnet", texts=[anchor, near, far]))
    assert answer.model == "mpnet" and answer.dimension == 768
    assert all(v.model == "mpnet" and v.dimension == 768 for v in answer.vectors)
    vectors = rows(answer)
    assert_unit_rows(vectors, 768)
    near_similarity, far_similarity = vectors[1] @ vectors[0], vectors[2] @ vectors[0]
    assert near_similarity > far_similarity + 0.15, (near_similarity, far_similarity)


@pytest.mark.slow
def test_mpnet_is_listed_as_a_real_768d_text_model(mpnet_stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    listing = mpnet_stub.ListModels(embedder_pb2.ListModelsRequest())
    (info,) = listing.models
    assert (info.name, info.dimension, info.test_model) == ("mpnet", 768, False)
    assert list(info.modalities) == [embedder_pb2.MODALITY_TEXT]
    assert info.source.endswith("all-mpnet-base-v2")
    assert not listing.text_to_image_available


# --- real EfficientNet-Lite0 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [((0, 0, 0.8, 1), (0.2, 0, 1, 1)), ((0, 0, 1, 0.8), (0, 0.2, 1, 1))],
    ids=["left-right", "top-bottom"],
)
def test_efficientnet_crops_of_one_painting_are_closer_than_other_paintings(
    stub: embedder_pb2_grpc.EmbedderServiceStub, first: tuple, second: tuple
) -> None:
    chosen = PAINTING_FILES[:: len(PAINTING_FILES) // 10][:10]  # spread over the collection
    crops = [crop_png(p, first) for p in chosen] + [crop_png(p, second) for p in chosen]
    answer = stub.EmbedImages(embedder_pb2.EmbedImagesRequest(model=EFFNET, images=[image(c) for c in crops]))
    assert answer.model == EFFNET and answer.dimension == 1360
    vectors = rows(answer)
    assert_unit_rows(vectors, 1360)
    a, b = vectors[:10], vectors[10:]
    cross = a @ b.T
    same = np.diag(cross).copy()
    np.fill_diagonal(cross, -1.0)
    within_a = a @ a.T
    np.fill_diagonal(within_a, -1.0)
    # every painting: its two crops are closer than either crop is to any other painting's crop
    best_other = np.maximum.reduce([cross.max(axis=1), cross.max(axis=0), within_a.max(axis=1)])
    assert (same > best_other + 0.1).all(), f"same {same.round(3)} vs other {best_other.round(3)}"


def test_label_image_returns_machine_labels_with_probabilities(stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    for top_k, expected in [(0, 5), (3, 3), (50, 50)]:
        answer = stub.LabelImage(embedder_pb2.LabelImageRequest(image=image(painting_bytes(1)), top_k=top_k))
        assert answer.model == EFFNET and answer.machine_generated
        probabilities = [label.probability for label in answer.labels]
        assert len(probabilities) == expected
        assert all(0.0 <= p <= 1.0 for p in probabilities)
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) <= 1.0 + 1e-5
        assert len({label.label for label in answer.labels}) == expected and all(label.label for label in answer.labels)


WATERCRAFT = {
    "canoe", "gondola", "yawl", "schooner", "pirate", "wreck", "fireboat", "speedboat", "lifeboat", "liner",
    "container ship", "catamaran", "trimaran", "paddlewheel", "boathouse", "submarine", "aircraft carrier",
}  # fmt: skip


@pytest.mark.parametrize(
    "painting_id",
    ["wikidata-Q50415974", "wikidata-Q59239636", "wikidata-Q19926066"],
    ids=["monet-row-boat", "ship-in-a-gale", "calm-sea-with-sailing-ships"],
)
def test_label_image_sees_boats_in_boat_paintings(
    stub: embedder_pb2_grpc.EmbedderServiceStub, painting_id: str
) -> None:
    # Real ImageNet weights: a random classifier would give ~0.001 to every class.
    answer = stub.LabelImage(embedder_pb2.LabelImageRequest(image=image(by_id(painting_id).read_bytes()), top_k=5))
    labels = [label.label for label in answer.labels]
    assert WATERCRAFT.intersection(labels), labels
    assert answer.labels[0].probability > 0.05


# --- micro-batching ------------------------------------------------------------------------------


def catalogue_titles(n: int) -> list[str]:
    with (PAINTINGS / "metadata.jsonl").open() as f:
        titles = [json.loads(line)["title"] for line in f]
    return titles[:n]


async def test_concurrent_calls_are_micro_batched_with_unbatched_results(
    embedder: ServiceProcess, stub: embedder_pb2_grpc.EmbedderServiceStub
) -> None:
    texts = catalogue_titles(64)  # real titles, 2 to 20+ words: padding inside a batch matters
    labels = {"model": "minilm", "modality": "text"}
    batches_before = metric(embedder.metrics_url, "vitrine_embedder_batches_total", **labels)
    items_before = metric(embedder.metrics_url, "vitrine_embedder_items_embedded_total", **labels)
    sizes_before = metric(embedder.metrics_url, "vitrine_embedder_batch_size_sum", **labels)

    async with grpc.aio.insecure_channel(embedder.address) as channel:
        aio_stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        answers = await asyncio.gather(
            *(aio_stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="minilm", texts=[t]), timeout=60) for t in texts)
        )
    batched = np.stack([rows(a)[0] for a in answers])

    batches = metric(embedder.metrics_url, "vitrine_embedder_batches_total", **labels) - batches_before
    items = metric(embedder.metrics_url, "vitrine_embedder_items_embedded_total", **labels) - items_before
    assert items == 64
    assert 2 <= batches < 64, f"64 concurrent calls ran as {batches} batches"
    assert metric(embedder.metrics_url, "vitrine_embedder_batch_size_sum", **labels) - sizes_before == 64

    # the same texts one at a time, each alone in its batch
    alone = np.stack(
        [rows(stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="minilm", texts=[t])))[0] for t in texts]
    )
    assert_unit_rows(batched, 384)
    assert np.allclose(batched, alone, atol=1e-4)
    assert (np.sum(batched * alone, axis=1) > 0.9999).all()


def test_one_request_keeps_input_order(stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    texts = catalogue_titles(40)
    together = rows(stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="minilm", texts=texts)))
    reversed_ = rows(stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="minilm", texts=texts[::-1])))
    assert np.allclose(together, reversed_[::-1], atol=1e-4)
    assert not np.allclose(together[0], together[1], atol=1e-2)


# --- CLIP: the loading path with a tiny random architecture --------------------------------------


def test_tiny_clip_is_listed_as_a_test_model(stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    listing = stub.ListModels(embedder_pb2.ListModelsRequest())
    models = {m.name: m for m in listing.models}
    assert set(models) == {"minilm", EFFNET, "clip"}
    clip = models["clip"]
    assert list(clip.modalities) == [embedder_pb2.MODALITY_TEXT, embedder_pb2.MODALITY_IMAGE]
    assert clip.test_model and "random weights" in clip.source and TINY_CLIP in clip.source
    assert clip.dimension == 32 and clip.device == "cpu" and clip.dtype == "float32"
    assert not listing.text_to_image_available, "random CLIP weights must not enable text-to-image search"
    assert not models["minilm"].test_model and not models[EFFNET].test_model
    assert models[EFFNET].dimension == 1360 and models["minilm"].dimension == 384
    # Each model's own micro-batch size on CPU (the setting is 0 here).
    assert {m.name: m.max_batch_size for m in listing.models} == {"minilm": 64, EFFNET: 8, "clip": 32}
    assert all(m.load_seconds > 0 for m in listing.models)
    assert listing.max_batch_items == 256


def test_tiny_clip_embeds_texts_and_images_into_one_space(stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    texts = rows(stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="clip", texts=["a ship", "a portrait"])))
    odd = Image.new("RGBA", (70, 30), (255, 0, 0, 128))  # not square, with alpha
    buffer = io.BytesIO()
    odd.save(buffer, "PNG")
    answer = stub.EmbedImages(
        embedder_pb2.EmbedImagesRequest(model="clip", images=[image(painting_bytes(2)), image(buffer.getvalue())])
    )
    assert answer.model == "clip" and answer.dimension == 32
    images = rows(answer)
    assert_unit_rows(texts, 32)
    assert_unit_rows(images, 32)
    assert not np.allclose(texts[0], texts[1]) and not np.allclose(images[0], images[1])


@dataclasses.dataclass
class TinyClip:
    checkpoint: Path
    model: Any
    preprocess: Callable[[Image.Image], Any]
    tokenizer: Callable[[list[str]], Any]

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            features = self.model.encode_text(self.tokenizer(texts)).numpy()
        return features / np.linalg.norm(features, axis=1, keepdims=True)

    def embed_image(self, data: bytes) -> np.ndarray:
        import torch

        pixels = self.preprocess(Image.open(io.BytesIO(data)).convert("RGB")).unsqueeze(0)
        with torch.inference_mode():
            features = self.model.encode_image(pixels).numpy()
        return (features / np.linalg.norm(features, axis=1, keepdims=True))[0]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> TinyClip:
    """The tiny CLIP built here, in memory, and saved as a plain state_dict checkpoint."""
    import open_clip
    import torch

    open_clip.add_model_config(TINY_CLIP_CONFIG)
    torch.manual_seed(1234)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP, pretrained=None, precision="fp32")
    model.eval()
    checkpoint = tmp_path_factory.mktemp("clip") / "tiny_clip.pt"
    torch.save(model.state_dict(), checkpoint)
    return TinyClip(checkpoint, model, preprocess, open_clip.get_tokenizer(TINY_CLIP))


@pytest.fixture(scope="module")
def clip_checkpoint_stub(tiny_clip: TinyClip) -> Iterator[embedder_pb2_grpc.EmbedderServiceStub]:
    env = {
        "VITRINE_EMBEDDER_MODELS": "clip",
        "VITRINE_EMBEDDER_CLIP_MODEL": TINY_CLIP,
        "VITRINE_EMBEDDER_CLIP_CONFIG": str(TINY_CLIP_CONFIG),
        "VITRINE_EMBEDDER_CLIP_PRETRAINED": str(tiny_clip.checkpoint),
        **BASE_ENV,
    }
    with running_service("embedder", env) as service:
        yield from stub_for(service)


def test_clip_checkpoint_file_gives_the_saved_models_vectors(
    clip_checkpoint_stub: embedder_pb2_grpc.EmbedderServiceStub, tiny_clip: TinyClip
) -> None:
    texts = ["a sailing ship in a storm", "portrait of an old woman"]
    served = rows(clip_checkpoint_stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="clip", texts=texts)))
    assert np.allclose(served, tiny_clip.embed_texts(texts), atol=1e-5)
    data = painting_bytes(3)
    served_image = rows(
        clip_checkpoint_stub.EmbedImages(embedder_pb2.EmbedImagesRequest(model="clip", images=[image(data)]))
    )[0]
    assert np.allclose(served_image, tiny_clip.embed_image(data), atol=1e-5)


def test_clip_from_a_checkpoint_counts_as_real_weights(
    clip_checkpoint_stub: embedder_pb2_grpc.EmbedderServiceStub, tiny_clip: TinyClip
) -> None:
    # The server cannot tell trained weights from random ones: a checkpoint the operator mounts is
    # trusted, so it is not a test model and enables text-to-image search (even this random one).
    listing = clip_checkpoint_stub.ListModels(embedder_pb2.ListModelsRequest())
    (clip,) = listing.models
    assert not clip.test_model
    assert clip.source == f"open_clip:{TINY_CLIP}@{tiny_clip.checkpoint}"
    assert listing.text_to_image_available


# --- bad input: right status, clear message, server still serving -------------------------------


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    """A local web server: /painting.jpg is an image, /page.html is not, anything else is 404."""
    pages = {"/painting.jpg": ("image/jpeg", painting_bytes(4)), "/page.html": ("text/html", b"<html>hi</html>")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in pages:
                self.send_error(404)
                return
            content_type, body = pages[self.path]
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def texts_request(*texts: str, model: str = "minilm") -> tuple[str, Any]:
    return "EmbedTexts", embedder_pb2.EmbedTextsRequest(model=model, texts=list(texts))


def images_request(*images: common_pb2.Image, model: str = EFFNET) -> tuple[str, Any]:
    return "EmbedImages", embedder_pb2.EmbedImagesRequest(model=model, images=list(images))


def second_image(bad: common_pb2.Image) -> tuple[str, Any]:
    """A batch whose second image is bad: the message must point at images[1]."""
    return images_request(image(painting_bytes(0)), bad)


def label_request(data: bytes, top_k: int = 0) -> tuple[str, Any]:
    return "LabelImage", embedder_pb2.LabelImageRequest(image=image(data), top_k=top_k)


def bad(case: str, build: Callable[[str], tuple[str, Any]], *fragments: str) -> Any:
    """One bad-input case: `build(web_url)` gives (method, request); the message must hold `fragments`."""
    return pytest.param(build, fragments, id=case)


ROOTED = PAINTINGS / "images"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n%%EOF\n"
BAD_INPUTS = [
    bad("unknown-model", lambda web: texts_request("x", model="gpt"), "'gpt'", "minilm", EFFNET, "clip"),
    bad(
        "text-model-for-images",
        lambda web: images_request(image(painting_bytes()), model="minilm"),
        "does not embed images",
        EFFNET,
    ),
    bad("image-model-for-texts", lambda web: texts_request("x", model=EFFNET), "does not embed texts", "minilm"),
    bad("no-texts", lambda web: texts_request(), "texts is empty"),
    bad("blank-text", lambda web: texts_request("fine", " \n\t "), "texts[1] is empty"),
    bad("text-too-long", lambda web: texts_request("a" * 8193), "texts[0]", "8193 characters", "8192"),
    bad("too-many-texts", lambda web: texts_request(*["x"] * 257), "257", "256"),
    bad("no-images", lambda web: images_request(), "images is empty"),
    bad("too-many-images", lambda web: images_request(*[image(b"x")] * 257), "257", "256"),
    bad("corrupt-bytes", lambda web: second_image(image(b"not a picture" * 20)), "images[1]", "not a recognised"),
    bad("truncated-jpeg", lambda web: second_image(image(painting_bytes()[:3000])), "images[1]", "truncated"),
    bad("jpeg-cut-in-header", lambda web: second_image(image(painting_bytes()[:14])), "images[1]", "truncated"),
    bad(
        "decompression-bomb",
        lambda web: second_image(image(png_bomb(20_000, 20_000))),
        "images[1]",
        "pixels",
        "400000000",
    ),
    bad("pdf", lambda web: second_image(image(PDF)), "images[1]", "not a recognised image"),
    bad("ico", lambda web: second_image(image(_ico())), "images[1]", "unsupported format ICO"),
    bad("empty-image", lambda web: second_image(image(b"")), "images[1] is empty"),
    bad("image-without-source", lambda web: second_image(common_pb2.Image()), "images[1] has neither data nor uri"),
    bad("uri-outside-roots", lambda web: second_image(image(uri="/etc/passwd")), "'/etc/passwd'", "outside"),
    bad("uri-escaping-root", lambda web: second_image(image(uri=f"{ROOTED}/../metadata.jsonl")), "outside"),
    bad(
        "uri-missing",
        lambda web: second_image(image(uri=f"{ROOTED}/no-such-painting.jpg")),
        "images[1].uri",
        "no-such-painting.jpg",
        "does not exist",
    ),
    bad("http-not-an-image", lambda web: second_image(image(uri=f"{web}/page.html")), "not a recognised image"),
    bad("http-404", lambda web: second_image(image(uri=f"{web}/missing.jpg")), "missing.jpg", "HTTP 404"),
    bad("http-refused", lambda web: second_image(image(uri="http://127.0.0.1:9/x.jpg")), "could not be fetched"),
    bad("label-top-k-51", lambda web: label_request(painting_bytes(), top_k=51), "top_k", "51", "50"),
    bad("label-negative-top-k", lambda web: label_request(painting_bytes(), top_k=-1), "top_k"),
    bad("label-corrupt-image", lambda web: label_request(b"junk" * 9), "image is not a recognised image"),
    # Issue #28: control characters reached the OS / http.client and answered INTERNAL.
    bad("label-uri-nul", lambda web: label_uri(f"{ROOTED}/a\x00b.jpg"), "image.uri", "control character", "'\\x00'"),
    bad("label-uri-newline", lambda web: label_uri(f"{web}/x.jpg\r\nHost: evil"), "image.uri", "control character"),
    bad("label-uri-space-in-url", lambda web: label_uri(f"{web}/two words.jpg"), "image.uri", "%20"),
    bad("label-uri-too-long", lambda web: label_uri(f"{ROOTED}/{'a' * 5000}.jpg"), "image.uri", "cannot be read"),
    bad("images-uri-tab", lambda web: second_image(image(uri=f"{ROOTED}/\tx.jpg")), "images[1].uri", "control"),
    bad("label-uri-unknown-home", lambda web: label_uri("~no-such-user-here/x.jpg"), "image.uri", "cannot be read"),
]


def label_uri(uri: str) -> tuple[str, Any]:
    return "LabelImage", embedder_pb2.LabelImageRequest(image=image(uri=uri))


def _ico() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 120, 200)).save(buffer, "ICO")
    return buffer.getvalue()


@pytest.mark.parametrize(("build", "fragments"), BAD_INPUTS)
def test_bad_input_is_invalid_argument_with_a_clear_message(
    embedder: ServiceProcess,
    stub: embedder_pb2_grpc.EmbedderServiceStub,
    web: str,
    build: Callable[[str], tuple[str, Any]],
    fragments: tuple[str, ...],
) -> None:
    method, request = build(web)
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, method)(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    for fragment in fragments:
        assert fragment in caught.value.details(), caught.value.details()
    assert_still_serving(embedder, stub)


def test_expired_deadline_is_deadline_exceeded(
    embedder: ServiceProcess, stub: embedder_pb2_grpc.EmbedderServiceStub
) -> None:
    for timeout in (0, -1):
        with pytest.raises(grpc.RpcError) as caught:
            stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="minilm", texts=["late"]), timeout=timeout)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(grpc.RpcError) as caught:  # expires while the server works on it
        stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="minilm", texts=["slow " * 100] * 64), timeout=0.01)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert_still_serving(embedder, stub)


# --- image URIs that work ------------------------------------------------------------------------


def test_file_and_http_uris_give_the_same_vectors_as_bytes(
    stub: embedder_pb2_grpc.EmbedderServiceStub, web: str
) -> None:
    answer = stub.EmbedImages(
        embedder_pb2.EmbedImagesRequest(
            model=EFFNET,
            images=[
                image(painting_bytes(4)),
                image(uri=str(PAINTING_FILES[4])),
                image(uri=f"file://{PAINTING_FILES[4]}"),
                image(uri=f"{web}/painting.jpg"),
            ],
        )
    )
    vectors = rows(answer)
    assert np.allclose(vectors, vectors[0], atol=1e-5)
    labels = stub.LabelImage(embedder_pb2.LabelImageRequest(image=image(uri=f"{web}/painting.jpg")))
    assert len(labels.labels) == 5


# --- StreamEmbed ---------------------------------------------------------------------------------


def test_stream_answers_mixed_items_in_order_with_their_ids(stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    requests = [
        embedder_pb2.StreamEmbedRequest(model="minilm", text="a calm harbour at dusk", request_id="t-1"),
        embedder_pb2.StreamEmbedRequest(model=EFFNET, image=image(painting_bytes(5)), request_id="i-1"),
        embedder_pb2.StreamEmbedRequest(model="clip", text="a calm harbour at dusk", request_id="t-2"),
        embedder_pb2.StreamEmbedRequest(model="clip", image=image(uri=str(PAINTING_FILES[6])), request_id="i-2"),
        embedder_pb2.StreamEmbedRequest(model=EFFNET, image=image(painting_bytes(7)), request_id="i-3"),
        embedder_pb2.StreamEmbedRequest(model="minilm", text="portrait of a merchant", request_id="t-3"),
    ]
    answers = list(stub.StreamEmbed(iter(requests), timeout=60))
    assert [a.request_id for a in answers] == [r.request_id for r in requests]
    for request, answer in zip(requests, answers, strict=True):
        assert answer.vector.model == request.model
        if request.WhichOneof("input") == "text":
            unary = stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model=request.model, texts=[request.text]))
        else:
            unary = stub.EmbedImages(embedder_pb2.EmbedImagesRequest(model=request.model, images=[request.image]))
        assert answer.vector.dimension == unary.dimension
        assert np.allclose(answer.vector.values, unary.vectors[0].values, atol=1e-4), request.request_id


def test_stream_of_many_items_keeps_order(stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    texts = catalogue_titles(120)
    requests = (
        embedder_pb2.StreamEmbedRequest(model="minilm", text=t, request_id=f"r{i}") for i, t in enumerate(texts)
    )
    answers = list(stub.StreamEmbed(requests, timeout=60))
    assert [a.request_id for a in answers] == [f"r{i}" for i in range(120)]
    together = rows(stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="minilm", texts=texts)))
    assert np.allclose(np.array([a.vector.values for a in answers]), together, atol=1e-4)


def test_stream_item_with_neither_text_nor_image_fails_the_stream(
    embedder: ServiceProcess, stub: embedder_pb2_grpc.EmbedderServiceStub
) -> None:
    requests = [
        embedder_pb2.StreamEmbedRequest(model="minilm", text="fine", request_id="ok-1"),
        embedder_pb2.StreamEmbedRequest(model="minilm", request_id="empty-2"),
        embedder_pb2.StreamEmbedRequest(model="minilm", text="never answered", request_id="late-3"),
    ]
    received = []
    with pytest.raises(grpc.RpcError) as caught:
        for answer in stub.StreamEmbed(iter(requests), timeout=60):
            received.append(answer.request_id)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'empty-2'" in caught.value.details() and "neither text nor image" in caught.value.details()
    assert received in ([], ["ok-1"])
    assert_still_serving(embedder, stub)


def test_stream_item_with_a_bad_image_fails_the_stream(
    embedder: ServiceProcess, stub: embedder_pb2_grpc.EmbedderServiceStub
) -> None:
    requests = [embedder_pb2.StreamEmbedRequest(model=EFFNET, image=image(b"junk"), request_id="bad")]
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.StreamEmbed(iter(requests), timeout=60))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a recognised image" in caught.value.details()
    assert_still_serving(embedder, stub)


# Issue #28: a stream message whose string fields are not valid UTF-8 does not parse; the
# stream must end with INVALID_ARGUMENT at once (after the answers before it), as unary calls do,
# instead of leaving the caller waiting for its deadline.
def _with_bad_utf8(message: embedder_pb2.StreamEmbedRequest) -> bytes:
    data = message.SerializeToString()
    assert data.count(b"QQQ") == 1
    return data.replace(b"QQQ", b"Q\xffQ")  # same length: the field's length prefix stays right


@pytest.mark.parametrize(
    "bad_message",
    [
        embedder_pb2.StreamEmbedRequest(model="QQQ", text="a harbour", request_id="bad"),
        embedder_pb2.StreamEmbedRequest(model="minilm", text="a QQQ harbour", request_id="bad"),
        embedder_pb2.StreamEmbedRequest(model="minilm", text="a harbour", request_id="QQQ"),
    ],
    ids=["model", "text", "request_id"],
)
def test_stream_message_with_bad_utf8_is_refused_at_once(
    embedder: ServiceProcess, stub: embedder_pb2_grpc.EmbedderServiceStub, bad_message: Any
) -> None:
    good = embedder_pb2.StreamEmbedRequest(model="minilm", text="fine", request_id="ok-1").SerializeToString()
    with grpc.insecure_channel(embedder.address) as channel:
        call = channel.stream_stream("/vitrine.v1.EmbedderService/StreamEmbed")  # raw bytes both ways
        received = []
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            for answer in call(iter([good, _with_bad_utf8(bad_message)]), timeout=30):
                received.append(embedder_pb2.StreamEmbedResponse.FromString(answer).request_id)
        elapsed = time.monotonic() - started
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert "not a valid message" in caught.value.details() and "UTF-8" in caught.value.details()
        assert elapsed < 10, f"answered after {elapsed:.1f} s: the stream waited for the deadline"
        assert received == ["ok-1"], "the message before the bad one is still answered"
        # The unary methods answer the same bytes the same way.
        unary = channel.unary_unary("/vitrine.v1.EmbedderService/EmbedTexts")
        texts = embedder_pb2.EmbedTextsRequest(model="minilm", texts=["a QQQ harbour"]).SerializeToString()
        with pytest.raises(grpc.RpcError) as caught:
            unary(texts.replace(b"QQQ", b"Q\xffQ"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_still_serving(embedder, stub)


# --- configurations that must not start ----------------------------------------------------------

BAD_CONFIGS: dict[str, tuple[dict[str, str], list[str]]] = {
    "missing-clip-checkpoint": (
        {
            "VITRINE_EMBEDDER_MODELS": "clip",
            "VITRINE_EMBEDDER_CLIP_MODEL": TINY_CLIP,
            "VITRINE_EMBEDDER_CLIP_CONFIG": str(TINY_CLIP_CONFIG),
            "VITRINE_EMBEDDER_CLIP_PRETRAINED": "/nonexistent/models/tiny_clip.pt",
        },
        ["checkpoint file /nonexistent/models/tiny_clip.pt does not exist"],
    ),
    "missing-clip-config": (
        {
            "VITRINE_EMBEDDER_MODELS": "clip",
            "VITRINE_EMBEDDER_CLIP_MODEL": TINY_CLIP,
            "VITRINE_EMBEDDER_CLIP_CONFIG": "/nonexistent/configs/tiny_clip.json",
        },
        ["config file /nonexistent/configs/tiny_clip.json does not exist"],
    ),
    "clip-without-architecture": ({"VITRINE_EMBEDDER_MODELS": "clip"}, ["VITRINE_EMBEDDER_CLIP_MODEL"]),
    "unknown-model": ({"VITRINE_EMBEDDER_MODELS": "minilm,gpt"}, ["unknown models ['gpt']", "mpnet"]),
    "bad-int": ({"VITRINE_EMBEDDER_MAX_BATCH_SIZE": "lots"}, ["VITRINE_EMBEDDER_MAX_BATCH_SIZE", "'lots'"]),
    "bad-dtype": ({"VITRINE_EMBEDDER_DTYPE": "int4"}, ["dtype 'int4'", "float32"]),
    "bad-backend": (
        {"VITRINE_EMBEDDER_MODELS": "minilm", "VITRINE_EMBEDDER_BACKENDS": "minilm=tensorrt"},
        ["unknown backend 'tensorrt'", "openvino"],
    ),
}
CONFIG_ERRORS = {
    "clip-without-architecture",
    "unknown-model",
    "bad-int",
    "bad-dtype",
    "bad-backend",
}  # refused before serving


@pytest.fixture(scope="module")
def failed_starts() -> dict[str, tuple[int | None, str]]:
    """Start every bad configuration at once (they fail in seconds); exit code and log of each."""
    started = {case: start_service("embedder", {**env, **BASE_ENV}) for case, (env, _) in BAD_CONFIGS.items()}
    results = {}
    deadline = time.monotonic() + 120
    for case, service in started.items():
        try:
            service.process.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            service.stop(5)
            results[case] = (None, service.log_path.read_text(errors="replace"))
            continue
        results[case] = (service.process.returncode, service.log_path.read_text(errors="replace"))
    return results


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_configuration_stops_the_start_with_a_clear_message(
    failed_starts: dict[str, tuple[int | None, str]], case: str
) -> None:
    returncode, log = failed_starts[case]
    assert returncode not in (None, 0), f"{case}: still running or exited 0; log:\n{log[-3000:]}"
    for fragment in BAD_CONFIGS[case][1]:
        assert fragment in log, f"{case}: {fragment!r} not in log:\n{log[-3000:]}"
    if case in CONFIG_ERRORS:
        assert "Traceback" not in log, f"{case}: a configuration error should be one line, not a traceback"
