"""The tagger's gRPC servicer and entry point (`python -m vitrine.tagger.server`).

At start-up it loads the vocabulary and the newest trained model version from `model_dir`
(or the one `model_version` names), checks that the embedder serves the model's text model,
and answers suggestions with explanations. Without a trained version it still starts (health ""
SERVING, `vitrine.v1.TaggerService` NOT_SERVING), says how to train one (SuggestTags answers
FAILED_PRECONDITION), and takes the first version that appears without a restart (ReloadModel, or
polling model_dir with model_poll_s; see lifecycle.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
from prometheus_client import Counter, Gauge, Histogram

from vitrine.common.embedder_client import EmbedderClient
from vitrine.common.errors import ServiceError, failed_precondition, invalid_argument, not_found, unavailable
from vitrine.common.objects import object_text
from vitrine.common.security import method_paths
from vitrine.common.server import Health, run_server
from vitrine.common.settings import load_settings
from vitrine.common.validation import bounded_int
from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.audit import load_report
from vitrine.tagger.audit import response as audit_response
from vitrine.tagger.drift import DriftMonitor
from vitrine.tagger.embeddings import ObjectVectors, ToEmbed
from vitrine.tagger.feedback import ACTION_NAMES, Decisions, FeedbackStore, open_feedback_store, parse
from vitrine.tagger.lifecycle import MODEL_LOADED, SERVICE_NAME, Busy, ModelWatcher, SingleFlight
from vitrine.tagger.model import TaggerModel
from vitrine.tagger.model_store import is_version, newest_version, stamp, version_problem, versions
from vitrine.tagger.safety import SafetyRules
from vitrine.tagger.settings import ENV_PREFIX, TaggerSettings
from vitrine.tagger.suggestions import Suggestion
from vitrine.tagger.transport import given_text_vectors, suggestion_message
from vitrine.v1 import common_pb2, tagger_pb2, tagger_pb2_grpc

log = logging.getLogger("vitrine.tagger")

# What the tagger suggests, for the dashboard's suggestion-distribution panels and drift watching.
SUGGESTION_SCORE = Histogram(
    "vitrine_tagger_suggestion_score",
    "Calibrated score of each suggestion returned.",
    ["model_version"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
SUGGESTIONS_PER_REQUEST = Histogram(
    "vitrine_tagger_suggestions_per_request",
    "Suggestions returned per object (0 = no tag above the threshold).",
    ["model_version"],
    buckets=(0, 1, 2, 5, 10, 20, 50, 100),
)
SUGGESTIONS = Counter(
    "vitrine_tagger_suggestions",
    "Suggestions returned, by kind (mimic: supervised evidence; recommend: semantic evidence only).",
    ["model_version", "kind"],
)
SUGGESTED_TAGS = Counter(
    "vitrine_tagger_suggested_tags",
    "Suggestions returned by tag, for the training's 50 most used tags (others count as tag='other').",
    ["model_version", "tag"],
)
DRIFT_SCORE = Gauge(
    "vitrine_tagger_drift_score",
    "Jensen-Shannon divergence (bits, 0..1) of the top-level categories of the last 2,000 suggestions "
    "from those of the training tags; NaN until 200 suggestions were seen.",
    ["model_version"],
)
FEEDBACK = Counter(
    "vitrine_tagger_feedback",
    "Curators' feedback items stored (replays of a stored feedback id not counted), by decision.",
    ["decision"],
)
KIND_NAMES = {tagger_pb2.SUGGESTION_KIND_MIMIC: "mimic", tagger_pb2.SUGGESTION_KIND_RECOMMEND: "recommend"}

DEFAULT_K = 10
MAX_K = 100
STREAM_BATCH = 32
# RPCs that change data (curators' feedback, the model served): they need the auth token when one is configured.
WRITE_METHODS = ("SubmitFeedback", "StreamSubmitFeedback", "ReloadModel")
MAX_STREAMED_FEEDBACK = 100_000
TRAIN_HINT = (
    "train one with `vitrine-tagger train --data <objects.jsonl.gz> --out-dir {dir}`, then ReloadModel "
    "(or set model_poll_s to have it loaded automatically; `make run` trains a demo version on first start)"
)


def _create_series(model: TaggerModel) -> DriftMonitor:
    """Create a version's labelled series now, so dashboards see them before the first call, and
    its drift monitor."""
    version = model.version
    SUGGESTION_SCORE.labels(version)
    SUGGESTIONS_PER_REQUEST.labels(version)
    for kind in KIND_NAMES.values():
        SUGGESTIONS.labels(version, kind)
    SUGGESTED_TAGS.labels(version, "other")
    drift = DriftMonitor(model.vocabulary, model.tag_counts)
    DRIFT_SCORE.labels(version).set(drift.score())
    return drift


def _worse_than(candidate: TaggerModel, current: TaggerModel) -> str:
    """Why `candidate` should not replace `current` by its recorded dev evaluation ('' = it may)."""
    new = candidate.meta.get("evaluation", {}).get("ensemble", {}).get("f1@5")
    old = current.meta.get("evaluation", {}).get("ensemble", {}).get("f1@5")
    if new is None:
        return f"version {candidate.version!r} has no recorded evaluation (vitrine-tagger eval --record)"
    if old is not None and new < old:
        return f"version {candidate.version!r} scores F1@5 {new:.4f} on dev, below {current.version!r} at {old:.4f}"
    return ""


class Tagger:
    def __init__(self, settings: TaggerSettings, health: Health | None = None) -> None:
        self.settings = settings
        self.health = health or Health(gated=(SERVICE_NAME,))
        self.embedder = EmbedderClient(
            settings.embedder_address, settings.embedder_timeout_s, tls_ca_file=settings.tls_ca_file
        )
        self.vocabulary: Vocabulary | None = None
        self.model: TaggerModel | None = None
        self.feedback: FeedbackStore | None = None
        self.safety: SafetyRules | None = None
        self.drift: DriftMonitor | None = None
        self.status_message = ""
        # One load at a time, keyed by (version folder, force): concurrent ReloadModel calls for the
        # same version share it instead of each loading a copy.
        self.loads: SingleFlight[tuple[Path, bool], tuple[str, str]] = SingleFlight()
        self.watch_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.vocabulary = await asyncio.to_thread(
            Vocabulary.load, self.settings.vocabulary, self.settings.vocabulary_language
        )
        store = self.settings.feedback_database_url or self.settings.feedback_db
        self.feedback = await asyncio.to_thread(open_feedback_store, store)
        self.safety = await asyncio.to_thread(SafetyRules.load, self.settings.safety_rules, self.vocabulary)
        for action in ACTION_NAMES.values():
            FEEDBACK.labels(action)
        log.info("vocabulary loaded", extra={"terms": len(self.vocabulary), "path": self.settings.vocabulary})
        model_dir = Path(self.settings.model_dir)
        newest = newest_version(model_dir)
        path = newest
        if self.settings.model_version:
            problem = version_problem(self.settings.model_version)
            if problem:
                raise ValueError(f"model_version {problem}")
            path = model_dir / self.settings.model_version
        if path is None:
            self.status_message = f"no trained model in {model_dir}: " + TRAIN_HINT.format(dir=model_dir)
        else:
            model = await asyncio.to_thread(TaggerModel.load, path, self.vocabulary)
            log.info("model loaded", extra={"version": model.version, "path": str(path)})
            await self.install(model)
        watcher = ModelWatcher(
            model_dir,
            self.settings.model_poll_s,
            load=lambda folder: self.load(folder, force=False, by="model_poll_s"),
            has_model=lambda: self.model is not None,
            no_model_message=lambda: self.status_message,
            seen=stamp(newest) if newest else None,
            serving=lambda: self.model.directory if self.model else None,
        )
        watcher.remind()  # now, not only once the embedder answers
        await self.embedder.wait_until_serving(self.settings.wait_for_embedder_s)
        missing = await self.missing_embedder_models(self.model)
        if missing:
            raise RuntimeError(missing)
        self.watch_task = asyncio.create_task(watcher.run())

    async def install(self, model: TaggerModel) -> None:
        """Serve `model` from the next call on (calls in flight finish with the one they began with)."""
        drift = _create_series(model)
        self.model, self.drift, self.status_message = model, drift, ""
        MODEL_LOADED.set(1)
        await self.health.set_gate(SERVICE_NAME, True)

    async def missing_embedder_models(self, model: TaggerModel | None) -> str:
        """What the embedder lacks to serve this version ('' = nothing)."""
        needed = {model.text_model, model.image_model} - {""} if model else {self.settings.text_model}
        models = {m.name for m in (await self.embedder.list_models()).models}
        if needed - models:
            return f"the embedder has no {sorted(needed - models)} model (it has {sorted(models)})"
        return ""

    async def reload(self, version: str, force: bool) -> tuple[str, str]:
        """Load another version (by folder name, or the newest) while the current one keeps
        answering, then switch (each call uses the version it started with, and says which)."""
        self.started()
        model_dir = Path(self.settings.model_dir)
        if version:
            problem = version_problem(version)
            if problem:
                raise invalid_argument(f"version {problem}")
        path = model_dir / version if version else newest_version(model_dir)
        if path is None or not is_version(path):
            known = [p.name for p in versions(model_dir)]
            raise not_found(f"no trained version {version!r} in {model_dir}; there are {known}")
        return await self.load(path, force, by="ReloadModel")

    async def load(self, path: Path, force: bool, by: str) -> tuple[str, str]:
        """(previous version, loaded version). Calls for the version being loaded wait for that
        load and share its result; a call for another version meanwhile is refused (ABORTED)."""
        vocabulary = self.started()
        try:
            return await self.loads.run((path, force), lambda: self._load(path, force, vocabulary, by))
        except Busy as exc:
            loading, forced = exc.key
            raise ServiceError(
                grpc.StatusCode.ABORTED,
                f"version {loading.name!r} is being loaded{' (forced)' if forced else ''}: "
                "retry in a few seconds, once that load has finished",
            ) from exc

    async def _load(self, path: Path, force: bool, vocabulary: Vocabulary, by: str) -> tuple[str, str]:
        """A version that scores below the current one on the dev split, or has no recorded
        evaluation, needs `force`."""
        try:
            candidate = await asyncio.to_thread(TaggerModel.load, path, vocabulary)
        except (OSError, ValueError) as exc:
            raise failed_precondition(f"version {path.name!r} cannot be loaded: {exc}") from exc
        current = self.model
        if current is not None and not force:
            refusal = _worse_than(candidate, current)
            if refusal:
                raise failed_precondition(refusal + "; set force to load it anyway")
        missing = await self.missing_embedder_models(candidate)
        if missing:
            raise failed_precondition(f"version {candidate.version!r} cannot be served: {missing}")
        await self.install(candidate)
        previous = current.version if current else ""
        log.info(
            "model reloaded", extra={"version": candidate.version, "previous": previous, "forced": force, "by": by}
        )
        return previous, candidate.version

    async def close(self) -> None:
        if self.watch_task is not None:
            self.watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watch_task
        await self.embedder.close()
        if self.feedback:
            self.feedback.close()

    def started(self) -> Vocabulary:
        """The vocabulary once start-up has loaded it and opened the feedback store; before,
        every call is answered UNAVAILABLE."""
        if self.vocabulary is None or self.feedback is None:
            raise unavailable("the tagger is still starting; retry in a few seconds")
        return self.vocabulary

    def check_request(self, request: tagger_pb2.SuggestTagsRequest) -> int:
        """Validate; answer k."""
        self.started()
        if not request.object.id.strip():
            raise invalid_argument("object.id is empty: give the object's identifier")
        text = object_text(request.object)
        has_image = request.object.image.WhichOneof("source") is not None
        if not text and not has_image:
            raise invalid_argument(
                f"object {request.object.id!r} has no usable text (title, artist, medium, ...) and no image"
            )
        if not text and not (self.model and self.model.image_model):
            raise invalid_argument(
                f"object {request.object.id!r} has only an image: this model version reads text "
                "(title, artist, medium, ...); give at least a title"
            )
        if len(text) > self.settings.max_text_chars:
            raise invalid_argument(f"object text has {len(text)} characters: at most {self.settings.max_text_chars}")
        k = bounded_int(request.k, "k", default=DEFAULT_K, max_value=MAX_K)
        if not 0.0 <= request.threshold <= 1.0:
            raise invalid_argument(f"threshold is {request.threshold}: it must be between 0 and 1")
        if request.vocabulary and request.vocabulary != "default":
            raise invalid_argument(f"unknown vocabulary {request.vocabulary!r}: this tagger knows 'default'")
        return k

    async def suggest(self, requests: Sequence[tagger_pb2.SuggestTagsRequest]) -> list[tagger_pb2.SuggestTagsResponse]:
        ks = [self.check_request(r) for r in requests]
        model, drift = self.model, self.drift  # the pair that answers this call, even across a reload
        if model is None:
            raise failed_precondition(self.status_message)
        objects = [r.object for r in requests]
        dimension = model.context.tag_vectors.shape[1]
        given = given_text_vectors(requests, model.text_model, dimension)
        todo = ToEmbed.plan(objects, read_images=bool(model.image_model), have_text=given)
        texts = await self.embedder.embed_texts(model.text_model, todo.texts) if todo.texts else None
        images = await self.embedder.embed_images(model.image_model, todo.images) if todo.images else None
        vectors = todo.assemble(dimension, texts, images)
        for row, vector in given.items():
            vectors.text[row] = vector
        assert self.feedback is not None
        decisions = await asyncio.to_thread(self.feedback.decisions, [o.id for o in objects])
        # Each request may have its own k and threshold: rank once, cut per request.
        assert self.safety is not None
        found = await asyncio.to_thread(
            self._suggest_sync, model, objects, vectors, requests, ks, decisions, self.safety
        )
        answers = [[suggestion_message(s) for s in suggestions] for suggestions in found]
        for request, suggestions in zip(requests, answers, strict=True):
            if request.omit_explanations:
                continue  # machine indexing (search's machine tags), not suggestions shown to curators
            SUGGESTIONS_PER_REQUEST.labels(model.version).observe(len(suggestions))
            for suggestion in suggestions:
                SUGGESTION_SCORE.labels(model.version).observe(suggestion.score)
                SUGGESTIONS.labels(model.version, KIND_NAMES.get(suggestion.kind, "unspecified")).inc()
                if drift is not None:
                    SUGGESTED_TAGS.labels(model.version, drift.tag_label(suggestion.tag.id)).inc()
            if drift is not None:
                drift.observe([s.tag.id for s in suggestions])
        if drift is not None:
            DRIFT_SCORE.labels(model.version).set(drift.score())
        return [
            tagger_pb2.SuggestTagsResponse(object_id=o.id, suggestions=a, model_version=model.version)
            for o, a in zip(objects, answers, strict=True)
        ]

    @staticmethod
    def _suggest_sync(
        model: TaggerModel,
        objects: list[common_pb2.CollectionObject],
        vectors: ObjectVectors,
        requests: Sequence[tagger_pb2.SuggestTagsRequest],
        ks: list[int],
        decisions: dict[str, Decisions],
        safety: SafetyRules,
    ) -> list[list[Suggestion]]:
        """Suggestions that honour the curators' feedback so far (tags rejected for an object are
        left out, tags accepted or added count as its own: `already_present`), with sensitive
        ones flagged `review_required`."""
        inputs = model.inputs(objects, vectors)
        decided = [decisions[o.id] for o in objects]
        # The object's own subjects may name tags by URI or label (a harvested record's concepts).
        existing = [
            set(model.vocabulary.canonical_subjects(o.subjects)) | d.accepted
            for o, d in zip(objects, decided, strict=True)
        ]
        wider = [k + len(d.rejected) for k, d in zip(ks, decided, strict=True)]
        explain = [not r.omit_explanations for r in requests]
        answers = model.suggest(inputs, wider, [r.threshold for r in requests], existing, explain=explain)
        kept = [
            [s for s in answer if s.tag.id not in d.rejected][:k]
            for answer, d, k in zip(answers, decided, ks, strict=True)
        ]
        for obj, suggestions in zip(objects, kept, strict=True):
            safety.flag(obj, suggestions)
        return kept

    async def submit_feedback(
        self, requests: Sequence[tagger_pb2.SubmitFeedbackRequest], numbered: bool = False
    ) -> list[bool]:
        """Validate every item, then store them all or none; whether each one is new."""
        vocabulary = self.started()
        assert self.feedback is not None  # started() checked it
        items = [parse(r, vocabulary, f"feedback #{i}: " if numbered else "") for i, r in enumerate(requests)]
        version = self.model.version if self.model else ""
        created = await asyncio.to_thread(self.feedback.record, items, version)
        for item, new in zip(items, created, strict=True):
            if new:
                FEEDBACK.labels(item.action).inc()
        return created


class TaggerServicer(tagger_pb2_grpc.TaggerServiceServicer):
    def __init__(self, tagger: Tagger) -> None:
        self.tagger = tagger

    async def SuggestTags(self, request: tagger_pb2.SuggestTagsRequest, context: grpc.aio.ServicerContext):
        return (await self.tagger.suggest([request]))[0]

    async def StreamSuggestTags(
        self, request_iterator: AsyncIterator[tagger_pb2.StreamSuggestTagsRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tagger_pb2.StreamSuggestTagsResponse]:
        batch: list[tagger_pb2.SuggestTagsRequest] = []
        async for message in request_iterator:
            batch.append(message.request)
            if len(batch) >= STREAM_BATCH:
                for answer in await self.tagger.suggest(batch):
                    yield tagger_pb2.StreamSuggestTagsResponse(response=answer)
                batch = []
        if batch:
            for answer in await self.tagger.suggest(batch):
                yield tagger_pb2.StreamSuggestTagsResponse(response=answer)

    async def GetTaggerInfo(self, request: tagger_pb2.GetTaggerInfoRequest, context: grpc.aio.ServicerContext):
        vocabulary = self.tagger.vocabulary
        model = self.tagger.model
        info = tagger_pb2.GetTaggerInfoResponse(
            model_loaded=model is not None,
            vocabulary_size=len(vocabulary) if vocabulary else 0,
            status_message=self.tagger.status_message,
        )
        if model is not None:
            meta = model.meta
            info.model_version = model.version
            info.text_model = model.text_model
            info.training_objects = int(meta.get("training_objects", 0))
            info.tags_known = int(meta.get("tags_known", 0))
            info.components.extend(meta.get("backends", []))
            info.trained_at = str(meta.get("trained_at", ""))
            for name, scores in meta.get("evaluation", {}).items():
                info.evaluation[name].CopyFrom(
                    tagger_pb2.MethodScores(
                        p_at_5=scores.get("p@5", 0),
                        r_at_5=scores.get("r@5", 0),
                        f1_at_5=scores.get("f1@5", 0),
                        ndcg_at_10=scores.get("ndcg@10", 0),
                        unseen_recall_at_10=scores.get("unseen_recall@10", 0),
                        coverage=scores.get("coverage", 0),
                    )
                )
        return info

    async def SubmitFeedback(self, request: tagger_pb2.SubmitFeedbackRequest, context: grpc.aio.ServicerContext):
        created = await self.tagger.submit_feedback([request])
        return tagger_pb2.SubmitFeedbackResponse(feedback_id=request.feedback_id, created=created[0])

    async def StreamSubmitFeedback(
        self, request_iterator: AsyncIterator[tagger_pb2.StreamSubmitFeedbackRequest], context: grpc.aio.ServicerContext
    ) -> tagger_pb2.StreamSubmitFeedbackResponse:
        """All or nothing: every item is checked before any is stored."""
        items = []
        async for message in request_iterator:
            if len(items) == MAX_STREAMED_FEEDBACK:
                raise invalid_argument(
                    f"more than {MAX_STREAMED_FEEDBACK} feedback items in one stream: nothing was stored; "
                    "split them over several streams"
                )
            items.append(message.feedback)
        created = await self.tagger.submit_feedback(items, numbered=True)
        new = sum(created)
        return tagger_pb2.StreamSubmitFeedbackResponse(received=len(items), created=new, duplicates=len(items) - new)

    async def Audit(self, request: tagger_pb2.AuditRequest, context: grpc.aio.ServicerContext):
        """The latest audit report's top findings per kind (the audit itself is a batch job)."""
        limit = bounded_int(request.limit_per_kind, "limit_per_kind", default=20, max_value=1000)
        path = Path(self.tagger.settings.audit_report)
        if not path.is_file():
            raise failed_precondition(
                f"no audit report at {path}: run `vitrine-tagger audit --data <objects> --model <version> "
                f"--out {path.parent}` first"
            )
        findings = await asyncio.to_thread(load_report, path)
        return audit_response(findings, limit)

    async def ReloadModel(self, request: tagger_pb2.ReloadModelRequest, context: grpc.aio.ServicerContext):
        previous, version = await self.tagger.reload(request.version, request.force)
        return tagger_pb2.ReloadModelResponse(previous_version=previous, model_version=version)


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings(TaggerSettings, ENV_PREFIX, argv, description="Vitrine tagger: subject-tag suggestions.")
    tagger = Tagger(settings)

    def register(server: grpc.aio.Server) -> list[str]:
        tagger_pb2_grpc.add_TaggerServiceServicer_to_server(TaggerServicer(tagger), server)
        return [tagger_pb2.DESCRIPTOR.services_by_name["TaggerService"].full_name]

    writes = method_paths(tagger_pb2.DESCRIPTOR.services_by_name["TaggerService"], WRITE_METHODS)
    asyncio.run(
        run_server(
            "tagger",
            settings,
            register,
            startup=tagger.start,
            shutdown=tagger.close,
            write_methods=writes,
            health_state=tagger.health,
        )
    )


if __name__ == "__main__":
    main()
