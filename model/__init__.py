"""Models: resolving weights from settings, and (later) generation, LoRA, reward."""
