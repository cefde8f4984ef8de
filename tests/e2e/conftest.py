"""The whole system for end-to-end tests: real embedder (MPNet, EfficientNet-Lite0, MiniLM, and a
tiny random-weight CLIP for the image path), a tagger serving a version trained on a Tate slice
(some objects given paintings by tag, so the image models have evidence to learn from), and
search on loopback ports, with a slice of the demo collection loaded through the search CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.otlp import Collector, running_collector
from tests.servers import ROOT, ServiceProcess, running_service, start_service
from tests.tagger_data import TaggerSlice, attach_images, train_small_model, write_slice

SHARED_DATA = ROOT.parent / "shared" / "data"
DEMO_OBJECT = "D00889"  # "A Two-Masted Sailing Ship Seen from the Shore", line 391 of tate_dev
TINY_CLIP_CONFIG = FIXTURES / "tiny_clip.json"


@dataclass
class System:
    embedder: ServiceProcess
    tagger: ServiceProcess
    search: ServiceProcess
    tagger_data: TaggerSlice
    tag_paintings: dict[str, Path]  # the painting given to objects that carry the tag
    tagger_models: Path  # the tagger's model_dir

    @property
    def services(self) -> list[ServiceProcess]:
        return [self.embedder, self.tagger, self.search]


@pytest.fixture(scope="session")
def collector() -> Iterator[Collector]:
    """An OTLP trace receiver every service of the session exports its spans to: the e2e suite
    runs with tracing on, as production does when a collector is configured."""
    with running_collector() as received:
        yield received


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[System]:
    data_dir: Path = tmp_path_factory.mktemp("system")
    embedder_env = {
        **collector.env,
        "VITRINE_EMBEDDER_MODELS": "mpnet,efficientnet-lite0,minilm,clip",
        "VITRINE_EMBEDDER_CLIP_MODEL": TINY_CLIP_CONFIG.stem,
        "VITRINE_EMBEDDER_CLIP_CONFIG": str(TINY_CLIP_CONFIG),
    }
    embedder = start_service("embedder", embedder_env)
    started = [embedder]
    try:
        embedder.wait_serving(300)
        # A real tagger version, trained through the embedder on a slice of the Tate data (MiniLM),
        # reading images with CLIP.
        tagger_data = write_slice(data_dir / "tagger-data")
        tag_paintings = attach_images(tagger_data)
        models = data_dir / "tagger-models"
        train_small_model(tagger_data, models / "e2e-v1", embedder=embedder.address, image_model="clip")
        tagger_env = {
            **collector.env,
            "VITRINE_TAGGER_EMBEDDER_ADDRESS": embedder.address,
            "VITRINE_TAGGER_MODEL_DIR": str(models),
            "VITRINE_TAGGER_VOCABULARY": str(tagger_data.vocabulary),
            "VITRINE_TAGGER_FEEDBACK_DB": str(data_dir / "tagger-feedback.sqlite3"),
            "VITRINE_TAGGER_AUDIT_REPORT": str(data_dir / "tagger-audit" / "audit.json"),
        }
        tagger = start_service("tagger", tagger_env)
        started.append(tagger)
        search = start_service(
            "search",
            {
                **collector.env,
                "VITRINE_SEARCH_EMBEDDER_ADDRESS": embedder.address,
                "VITRINE_SEARCH_DATA_DIR": str(data_dir / "search"),
                "VITRINE_SEARCH_TAGGER_ADDRESS": tagger.address,  # machine tags at ingest
            },
        )
        started.append(search)
        for service in started:
            service.wait_serving(300)
        ingest = [sys.executable, "-m", "vitrine.search.cli", "--address", search.address, "ingest"]
        subprocess.run(
            [*ingest, str(SHARED_DATA / "tate" / "tate_dev.jsonl.gz"), "--limit", "400"],
            check=True,
            env=os.environ,
            cwd=ROOT,
        )
        # The README's Recommend example likes one painting; the explorer's browser test shows a page of
        # 24 and needs paintings left over to recommend.
        paintings = SHARED_DATA / "paintings" / "metadata.jsonl"
        subprocess.run([*ingest, str(paintings), "--limit", "60", "--quiet"], check=True, env=os.environ, cwd=ROOT)
        system = System(embedder, tagger, search, tagger_data, tag_paintings, models)
        yield system
        # A test may have replaced a service with a new process (the outage test restarts the
        # embedder): stop the ones the system has now as well.
        started += [s for s in (system.embedder, system.tagger, system.search) if s not in started]
    finally:
        for service in reversed(started):
            service.stop()


@pytest.fixture(scope="module")
def explorer(system: System, collector: Collector) -> Iterator[ServiceProcess]:
    """The explorer (web page and gateway) in front of the system, serving the paintings' images."""
    env = {
        **collector.env,
        "VITRINE_EXPLORER_SEARCH_ADDRESS": system.search.address,
        "VITRINE_EXPLORER_TAGGER_ADDRESS": system.tagger.address,
        "VITRINE_EXPLORER_IMAGE_ROOTS": str(SHARED_DATA / "paintings"),
        "VITRINE_EXPLORER_RPC_TIMEOUT_S": "60",
    }
    with running_service("explorer", env) as service:
        yield service
