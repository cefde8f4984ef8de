"""The embedder service: the only Vitrine process that loads neural models."""
