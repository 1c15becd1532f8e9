"""Training for retrieval: the corpus-tuned encoder, its fitted fusion, the reranker.

Run by `lectern train`; handed the store, corpus and models it needs. Serving never
imports this package.
"""
