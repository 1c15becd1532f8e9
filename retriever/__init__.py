"""Passages out: dense (FAISS), sparse (BM25), hybrid fusion, and (later) reranking."""
