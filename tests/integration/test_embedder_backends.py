"""The text models on ONNX Runtime and OpenVINO give torch's vectors, in-process and through the service.

MiniLM (real weights, small) stands in for MPNet: the export, the runtimes and the pooling are the
same code for both. `make bench` measures MPNet's speed and cosine per backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.integration.test_embedder import BASE_ENV, rows, stub_for
from tests.servers import running_service
from vitrine.embedder.models.base import choose_placement
from vitrine.embedder.models.sentence_text import SentenceTextModel, minilm
from vitrine.embedder.settings import EmbedderSettings
from vitrine.v1 import embedder_pb2, embedder_pb2_grpc

TEXTS = [
    "Study",
    "Portrait of a woman in a red dress",
    "Ships in a storm off the coast of Dover, watercolour on paper " * 12,  # past MiniLM's 256 tokens
    "Landscape with cattle at evening",
]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    model = minilm(choose_placement("cpu", "float32"))
    model.load()
    return model.embed_texts(TEXTS)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exported")


@pytest.mark.parametrize(
    ("backend", "dtype", "least_cosine"),
    [("onnx", "float32", 0.9999), ("openvino", "float32", 0.9999), ("openvino", "bfloat16", 0.999)],
)
def test_backend_gives_torchs_vectors(
    torch_vectors: np.ndarray, export_dir: Path, backend: str, dtype: str, least_cosine: float
) -> None:
    model = minilm(choose_placement("cpu", dtype), backend, export_dir)
    model.load()
    vectors = model.embed_texts(TEXTS)
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * torch_vectors).sum(axis=1)
    assert cosines.min() >= least_cosine, cosines
    alone = model.embed_texts(TEXTS[1:2])  # a batch of one, shaped unlike the export's sample
    assert float(alone[0] @ torch_vectors[1]) >= least_cosine
    assert model.info()["backend"] == backend and model.info()["dtype"] == dtype
    assert not hasattr(model, "model"), "the PyTorch weights are dropped once the graph runs elsewhere"


def test_export_is_made_once_and_reused(export_dir: Path) -> None:
    minilm(choose_placement("cpu", "float32"), "onnx", export_dir).load()
    (graph,) = export_dir.glob("minilm-*/model.onnx")
    written = graph.stat().st_mtime_ns
    minilm(choose_placement("cpu", "float32"), "openvino", export_dir).load()
    assert graph.stat().st_mtime_ns == written
    assert not list(export_dir.glob("**/.partial-*"))


def test_unknown_or_misplaced_backends_are_refused() -> None:
    placement = choose_placement("cpu", "float32")
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        SentenceTextModel("minilm", Path("/nowhere"), placement, "tensorrt")
    with pytest.raises(ValueError, match="onnx runs float32 only"):
        SentenceTextModel("minilm", Path("/nowhere"), choose_placement("cpu", "bfloat16"), "onnx")
    with pytest.raises(ValueError, match="write model=backend"):
        _ = EmbedderSettings(backends="minilm").backend_of
    from vitrine.embedder.models.registry import build_models

    with pytest.raises(ValueError, match="only loaded text models"):
        build_models(EmbedderSettings(models="minilm", backends="efficientnet-lite0=onnx"))


@pytest.fixture(scope="module")
def openvino_stub() -> Iterator[embedder_pb2_grpc.EmbedderServiceStub]:
    env = {"VITRINE_EMBEDDER_MODELS": "minilm", "VITRINE_EMBEDDER_BACKENDS": "minilm=openvino", **BASE_ENV}
    with running_service("embedder", env) as service:
        yield from stub_for(service)


def test_service_lists_the_backend_and_serves_its_vectors(
    openvino_stub: embedder_pb2_grpc.EmbedderServiceStub, torch_vectors: np.ndarray
) -> None:
    (info,) = openvino_stub.ListModels(embedder_pb2.ListModelsRequest()).models
    assert (info.name, info.backend, info.dtype, info.dimension) == ("minilm", "openvino", "float32", 384)
    assert "ONNX export" in info.source
    answer = openvino_stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="minilm", texts=TEXTS), timeout=60)
    assert (rows(answer) * torch_vectors).sum(axis=1).min() >= 0.9999
