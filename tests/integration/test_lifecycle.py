"""Service lifecycle: NOT_SERVING until ready, graceful drain on SIGTERM, clean refusal after."""

from __future__ import annotations

import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2

from tests.servers import free_port, running_service, start_service
from vitrine.v1 import embedder_pb2, embedder_pb2_grpc


def test_tagger_is_not_serving_while_its_embedder_is_missing() -> None:
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    tagger = start_service("tagger", {"VITRINE_TAGGER_EMBEDDER_ADDRESS": nowhere})
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status is None:
            status = tagger.health()
            time.sleep(0.3)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        time.sleep(2)
        assert tagger.health() == health_pb2.HealthCheckResponse.NOT_SERVING
        assert tagger.process.poll() is None
    finally:
        assert tagger.stop() == 0


def test_sigterm_drains_in_flight_calls_then_refuses_new_ones() -> None:
    env = {"VITRINE_EMBEDDER_MODELS": "minilm", "VITRINE_EMBEDDER_GRACE_SECONDS": "60"}
    with running_service("embedder", env) as embedder:
        texts = [f"a long catalogue description of artwork number {i}, " * 8 for i in range(256)]
        results: dict[str, object] = {}

        def slow_call() -> None:
            with grpc.insecure_channel(embedder.address) as channel:
                stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
                try:
                    answer = stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="minilm", texts=texts), timeout=120)
                    results["vectors"] = len(answer.vectors)
                except grpc.RpcError as exc:
                    results["error"] = exc.code()

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.5)  # the call is in flight: 256 texts take seconds on 2 cores
        embedder.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with grpc.insecure_channel(embedder.address) as channel, pytest.raises(grpc.RpcError) as refused:
            embedder_pb2_grpc.EmbedderServiceStub(channel).ListModels(embedder_pb2.ListModelsRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        caller.join(120)
        assert results == {"vectors": 256}, f"in-flight call did not finish cleanly: {results}"
        assert embedder.process.wait(60) == 0
        assert '"msg": "stopped"' in embedder.log_path.read_text()
