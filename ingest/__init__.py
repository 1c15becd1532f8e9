"""Documents in: partition with unstructured, chunk, embed, store."""
