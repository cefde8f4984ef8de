"""The tags the same artist's works carry: P(tag | artist), smoothed towards zero for artists
with few tagged works. Strong where an artist's works share subjects (sketchbooks, series)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from vitrine.tagger.backends.base import Backend, Inputs, tagged_mask, top_k_sparse

# Pseudo-count: an artist with 2 tagged works gets at most 2/(2+2) = 0.5 for a shared tag.
SMOOTHING = 2.0


class ArtistPrior(Backend):
    name = "artist_prior"

    def train(self, inputs: Inputs, labels: sp.csr_matrix, seed: int) -> None:
        tagged = tagged_mask(labels)
        artists = sorted({o.artist for o, t in zip(inputs.objects, tagged, strict=True) if o.artist and t})
        self.artists = {a: i for i, a in enumerate(artists)}
        rows = [self.artists.get(o.artist, -1) if t else -1 for o, t in zip(inputs.objects, tagged, strict=True)]
        keep = np.flatnonzero(np.asarray(rows) >= 0)
        membership = sp.csr_matrix(
            (np.ones(len(keep), dtype=np.float32), (np.asarray(rows)[keep], keep)), shape=(len(artists), len(rows))
        )
        counts = (membership @ labels).tocsr()
        works = np.asarray(membership.sum(axis=1)).ravel()
        self.priors = sp.csr_matrix(sp.diags(1.0 / (works + SMOOTHING)) @ counts, dtype=np.float32)
        self.works = works

    def suggest(self, inputs: Inputs, limit: int) -> sp.csr_matrix:
        rows = [self.artists.get(o.artist, -1) for o in inputs.objects]
        empty = sp.csr_matrix((1, self.priors.shape[1]), dtype=np.float32)
        stacked = sp.vstack([self.priors[r] if r >= 0 else empty for r in rows], format="csr")
        return top_k_sparse(stacked, limit)

    def artist_works(self, artist: str) -> int:
        index = self.artists.get(artist)
        return 0 if index is None else int(self.works[index])

    def save(self, directory: Path) -> None:
        (directory / "artists.json").write_text(json.dumps(sorted(self.artists, key=self.artists.__getitem__)))
        sp.save_npz(directory / "priors.npz", self.priors)
        np.save(directory / "works.npy", self.works)

    def load(self, directory: Path) -> None:
        self.artists = {a: i for i, a in enumerate(json.loads((directory / "artists.json").read_text()))}
        self.priors = sp.load_npz(directory / "priors.npz").tocsr()
        self.works = np.load(directory / "works.npy", allow_pickle=False)
