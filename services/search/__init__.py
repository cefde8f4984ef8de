"""The search service: hybrid search, recommendation and the collection write path.

It stores one vector collection (text and image vectors plus the catalogue payload) and asks the
embedder for every vector; it loads no neural model itself.
"""
