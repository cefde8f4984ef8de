"""One-vs-rest logistic regression over the MPNet text vector, for every tag used at least
`min_count` times: one linear layer trained with a binary cross-entropy per tag (the same model
as independent logistic regressions, fitted together in a few epochs with torch). Answering
is one matrix product in numpy: the serving image has no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from vitrine.tagger.backends.base import Backend, Inputs, chunks, tagged_mask, top_k_rows


class Linear(Backend):
    name = "linear"
    min_count = 2
    epochs = 12
    batch_size = 256
    learning_rate = 2e-3
    weight_decay = 1e-6

    def train(self, inputs: Inputs, labels: sp.csr_matrix, seed: int) -> None:
        import torch

        counts = np.asarray(labels.sum(axis=0)).ravel()
        self.tags = np.flatnonzero(counts >= self.min_count)
        tagged = np.flatnonzero(tagged_mask(labels))
        x = torch.from_numpy(inputs.text_vectors[tagged].astype(np.float32))
        y_sparse = labels[tagged][:, self.tags].tocsr()
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        layer = torch.nn.Linear(x.shape[1], len(self.tags))
        # Start from each tag's base rate so early epochs are not spent learning the prior.
        prior = np.clip(counts[self.tags] / max(len(tagged), 1), 1e-6, 1 - 1e-6)
        with torch.no_grad():
            layer.bias.copy_(torch.from_numpy(np.log(prior / (1 - prior)).astype(np.float32)))
        optimiser = torch.optim.Adam(layer.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")
        scale = 10.0  # unit vectors: a wider input range lets small weights separate tags
        for _ in range(self.epochs):
            order = torch.randperm(len(tagged), generator=generator).numpy()
            for part in chunks(len(order), self.batch_size):
                rows = order[part]
                target = torch.from_numpy(y_sparse[rows].toarray())
                optimiser.zero_grad()
                loss = loss_fn(layer(x[rows] * scale), target) / len(rows)
                loss.backward()
                optimiser.step()
        self.weight = (layer.weight.detach() * scale).numpy().copy()
        self.bias = layer.bias.detach().numpy().copy()

    def suggest(self, inputs: Inputs, limit: int) -> sp.csr_matrix:
        full = len(self.context.vocabulary)
        parts = []
        for part in chunks(len(inputs), 1024):
            vectors = inputs.text_vectors[part].astype(np.float32)
            probabilities = 1.0 / (1.0 + np.exp(-(vectors @ self.weight.T + self.bias)))
            probabilities[~vectors.any(axis=1)] = 0.0  # no text: the bias alone is no evidence
            local = top_k_rows(probabilities, limit)
            # Map the local columns (trained tags) back to vocabulary columns.
            parts.append(
                sp.csr_matrix((local.data, self.tags[local.indices], local.indptr), shape=(local.shape[0], full))
            )
        return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, full), dtype=np.float32)

    def save(self, directory: Path) -> None:
        arrays = {"weight": self.weight, "bias": self.bias, "tags": self.tags.astype(np.int64)}
        save_file(arrays, directory / "linear.safetensors")

    def load(self, directory: Path) -> None:
        arrays = load_file(directory / "linear.safetensors")
        self.weight, self.bias, self.tags = arrays["weight"], arrays["bias"], arrays["tags"]
