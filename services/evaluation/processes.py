"""The processes the search evaluation starts: an embedder, a tagger and search services, each on
loopback with its log in the output folder, each search service on a fresh temporary store; all
stopped on exit, also on an error or Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from vitrine.evaluation.errors import EvalError
from vitrine.evaluation.metrics import RECALL_K
from vitrine.launcher import ServiceProcess, start_service


class Services(contextlib.AbstractContextManager["Services"]):
    """The processes this evaluation starts; all stopped on exit (normal, error or Ctrl-C)."""

    def __init__(self, log_dir: Path, ready_timeout_s: float, quiet: bool) -> None:
        self.log_dir = log_dir
        self.ready_timeout_s = ready_timeout_s
        self.quiet = quiet
        self.started: list[ServiceProcess] = []
        self._tmp = contextlib.ExitStack()

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def _start(self, name: str, env: Mapping[str, str]) -> ServiceProcess:
        service = start_service(name, self.log_dir, {**os.environ, **env})
        self.started.append(service)
        try:
            service.wait_serving(self.ready_timeout_s)
        except (RuntimeError, TimeoutError) as exc:
            raise EvalError(str(exc)) from exc
        self._say(f"{name} SERVING on {service.address} (log {service.log_path})")
        return service

    def start_embedder(self, models: str) -> str:
        self._say(f"starting an embedder with {models} ...")
        env = {"VITRINE_EMBEDDER_MODELS": models, "VITRINE_EMBEDDER_HOST": "127.0.0.1"}
        return self._start("embedder", env).address

    def start_tagger(self, model_dir: Path, embedder: str) -> str:
        """A tagger serving the trained version in `model_dir`."""
        self._say(f"starting a tagger with {model_dir} ...")
        env = {
            "VITRINE_TAGGER_HOST": "127.0.0.1",
            "VITRINE_TAGGER_MODEL_DIR": str(model_dir.parent),
            "VITRINE_TAGGER_MODEL_VERSION": model_dir.name,
            "VITRINE_TAGGER_EMBEDDER_ADDRESS": embedder,
            # Its own feedback database: nobody's curators' decisions change what it suggests.
            "VITRINE_TAGGER_FEEDBACK_DB": str(
                Path(self._tmp.enter_context(tempfile.TemporaryDirectory(prefix="vitrine-eval-"))) / "feedback.db"
            ),
            "VITRINE_TAGGER_FEEDBACK_DATABASE_URL": "",
        }
        return self._start("tagger", env).address

    def start_search(self, embedder: str, text_model: str, image_model: str, tagger: str = "") -> ServiceProcess:
        """A search service on a fresh, empty embedded store in a temporary folder (machine tags
        from `tagger` when given)."""
        data_dir = self._tmp.enter_context(tempfile.TemporaryDirectory(prefix="vitrine-eval-"))
        env = {
            "VITRINE_SEARCH_HOST": "127.0.0.1",
            "VITRINE_SEARCH_DATA_DIR": data_dir,
            "VITRINE_SEARCH_QDRANT_URL": "",  # never a shared Qdrant server: a store of its own
            "VITRINE_SEARCH_COLLECTION": "eval",
            "VITRINE_SEARCH_EMBEDDER_ADDRESS": embedder,
            "VITRINE_SEARCH_TEXT_MODEL": text_model,
            "VITRINE_SEARCH_IMAGE_MODEL": image_model,
            "VITRINE_SEARCH_MAX_PAGE_SIZE": str(RECALL_K),
            "VITRINE_SEARCH_TAGGER_ADDRESS": tagger,
        }
        return self._start("search", env)

    def stop(self, service: ServiceProcess) -> None:
        service.stop()
        if service in self.started:
            self.started.remove(service)

    def __exit__(self, *exc: object) -> None:
        for service in reversed(self.started):
            service.terminate()
        for service in reversed(self.started):
            service.stop()
        self.started.clear()
        self._tmp.close()
