"""Models: resolving weights from settings, generation, context compression, answers.

`model.generators` holds the generator backends. Training (LoRA, the reward model) goes
in `model.train` and answer evaluation in `model.eval`; serving never imports either.
"""
