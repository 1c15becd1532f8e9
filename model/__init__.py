"""Models: resolving weights from settings, generation, context compression, answers.

`model.generators` holds the generator backends; training (LoRA, reward model) will live
in `model.train` and answer evaluation in `model.eval`, which serving never imports.
"""
