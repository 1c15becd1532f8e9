"""Passages out: dense (FAISS) and sparse (BM25) retrieval, hybrid fusion, reranking.

The modules here serve requests. `retriever.train` tunes the encoder and trains the
reranker; `retriever.eval` measures retrieval. Serving code imports neither.
"""
