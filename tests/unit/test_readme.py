"""The README documents every setting of every service."""

from __future__ import annotations

import pytest

from tests.servers import ROOT
from vitrine.common.settings import describe
from vitrine.embedder.settings import ENV_PREFIX as EMBEDDER_PREFIX
from vitrine.embedder.settings import EmbedderSettings
from vitrine.explorer.settings import ENV_PREFIX as EXPLORER_PREFIX
from vitrine.explorer.settings import ExplorerSettings
from vitrine.search.settings import ENV_PREFIX as SEARCH_PREFIX
from vitrine.search.settings import SearchSettings
from vitrine.tagger.settings import ENV_PREFIX as TAGGER_PREFIX
from vitrine.tagger.settings import TaggerSettings


@pytest.mark.parametrize(
    ("settings", "prefix"),
    [
        (EmbedderSettings, EMBEDDER_PREFIX),
        (TaggerSettings, TAGGER_PREFIX),
        (SearchSettings, SEARCH_PREFIX),
        (ExplorerSettings, EXPLORER_PREFIX),
    ],
)
def test_every_setting_is_in_the_readme(settings: type, prefix: str) -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [env for env, _, _ in describe(settings, prefix) if f"`{env}`" not in readme]
    assert not missing, f"README lacks {missing}: paste `vitrine settings` into its Settings section"
