"""Training for generation: the LoRA-tuned generator and how it is loaded for training.

Run by `lectern train`; handed the models it needs. Serving never imports this package.
"""
