"""Documents in: check the format, partition with unstructured, chunk, embed, store."""
