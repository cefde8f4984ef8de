"""Omikuji (Bonsai configuration) over TF-IDF words: an extreme multi-label tree model, the
strongest single model Annif offers for this collection."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
import omikuji
import scipy.sparse as sp

from vitrine.tagger.backends.base import Backend, Inputs


class OmikujiTree(Backend):
    name = "omikuji"
    # Bonsai: shallow, wide trees without balanced clustering (Annif's settings for "bonsai").
    cluster_balanced = False
    cluster_k = 100
    max_depth = 3

    def train(self, inputs: Inputs, labels: sp.csr_matrix, seed: int) -> None:
        features = inputs.tfidf.tocsr()
        labels = labels.tocsr()
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "train.txt"
            samples = 0
            with path.open("w") as out:
                lines = []
                for row in range(features.shape[0]):
                    tags = labels.indices[labels.indptr[row] : labels.indptr[row + 1]]
                    cols = features.indices[features.indptr[row] : features.indptr[row + 1]]
                    values = features.data[features.indptr[row] : features.indptr[row + 1]]
                    if len(tags) == 0 or len(cols) == 0:
                        continue
                    pairs = " ".join(f"{c}:{v:.6f}" for c, v in zip(cols, values, strict=True))
                    lines.append(",".join(map(str, sorted(tags))) + " " + pairs)
                    samples += 1
                out.write(f"{samples} {features.shape[1]} {labels.shape[1]}\n")
                out.write("\n".join(lines) + "\n")
            params = omikuji.Model.default_hyper_param()
            params.cluster_balanced = self.cluster_balanced
            params.cluster_k = self.cluster_k
            params.max_depth = self.max_depth
            os.environ.setdefault("RAYON_NUM_THREADS", str(os.cpu_count() or 1))
            with _quiet_stderr(Path(scratch) / "omikuji.log"):
                self.model = omikuji.Model.train_on_data(str(path), params)

    def suggest(self, inputs: Inputs, limit: int) -> sp.csr_matrix:
        features = inputs.tfidf.tocsr()
        indptr, indices, data = [0], [], []
        for row in range(features.shape[0]):
            start, end = features.indptr[row], features.indptr[row + 1]
            pairs = list(zip(features.indices[start:end].tolist(), features.data[start:end].tolist(), strict=True))
            found = self.model.predict(pairs, top_k=limit) if pairs else []
            indices += [t for t, _ in found]
            data += [s for _, s in found]
            indptr.append(len(indices))
        return sp.csr_matrix(
            (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), indptr),
            shape=(features.shape[0], len(self.context.vocabulary)),
        )

    def save(self, directory: Path) -> None:
        self.model.save(str(directory / "omikuji-model"))

    def load(self, directory: Path) -> None:
        self.model = omikuji.Model.load(str(directory / "omikuji-model"))


@contextlib.contextmanager
def _quiet_stderr(log_path: Path):
    """Omikuji's Rust side draws a progress bar per example on file descriptor 2: send it to a
    file while training (Python's own stderr object is not involved)."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with log_path.open("w") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
