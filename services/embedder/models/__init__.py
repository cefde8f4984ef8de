"""Model families the embedder can load, one module each, behind `base.EmbeddingModel`."""
