"""LoRA hyperparameters, the modules they adapt per architecture, and the training record."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from lectern.errors import ConfigError

# The attention projections of each architecture, and the MLP's. LLaMA-style models
# (LLaMA, Mistral, Qwen2, SmolLM2) name them alike; Falcon fuses q, k and v.
_ATTENTION = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "falcon": ["query_key_value", "dense"],
}
_MLP = {
    "llama": ["gate_proj", "up_proj", "down_proj"],
    "mistral": ["gate_proj", "up_proj", "down_proj"],
    "qwen2": ["gate_proj", "up_proj", "down_proj"],
    "falcon": ["dense_h_to_4h", "dense_4h_to_h"],
}


def default_targets(model_type: str, mlp: bool) -> list[str]:
    """The modules LoRA adapts for an architecture (`config.model_type`)."""
    if model_type not in _ATTENTION:
        raise ConfigError(
            f"no default LoRA target modules for model type {model_type!r} "
            f"(known: {sorted(_ATTENTION)}); name them with --targets"
        )
    return _ATTENTION[model_type] + (_MLP[model_type] if mlp else [])


class LoraTrainConfig(BaseModel):
    rank: int = Field(16, ge=1, le=512)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    targets: list[str] | None = Field(None, description="None: the architecture's defaults")
    # The MLP too: on SmolLM2-135M 3.5% of the weights trainable instead of 1.4%, for ~10%
    # more time a step.
    mlp: bool = True
    learning_rate: float = Field(3e-4, gt=0, le=1)
    batch_size: int = Field(8, ge=1, le=512)
    epochs: float = Field(1.0, gt=0, le=50)
    warmup: float = Field(0.05, ge=0, lt=1, description="share of the steps")
    max_grad_norm: float = Field(1.0, gt=0)
    max_tokens: int = Field(1024, ge=32, description="longer prompts are cut from the left")
    eval_every: int = Field(100, ge=1, description="steps between held-out evaluations")
    checkpoint_every: int = Field(100, ge=1, description="steps between checkpoints")
    eval_examples: int = Field(200, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _targets_named(self) -> LoraTrainConfig:
        if self.targets is not None and not self.targets:
            raise ValueError("targets, when given, must name at least one module")
        return self


class HeldOutPoint(BaseModel):
    step: int
    loss: float


class DataCounts(BaseModel):
    train: dict[str, dict[str, int]]  # source -> kind ("answer", "no gold", ...) -> examples
    heldout: dict[str, dict[str, int]]
    unanswerable_share: float  # of the questions, built without their gold passage
    abstain_share: float | None = None  # of the examples after rebalancing (all kinds)
    budgets: list[int]
    passages: int
    split_rule: str


class GeneratorTrainingRecord(BaseModel):
    """What `lectern train generator` did; saved as training-record.json beside the adapter."""

    version: Literal[1] = 1
    base_model: str  # the generator setting the adapter was trained on
    base_folder: str
    model_type: str
    vocab_size: int | None = None  # the base's: serving refuses an adapter for another
    targets: list[str]
    config: LoraTrainConfig
    precision: str
    data: DataCounts
    steps: int
    examples_seen: int
    trainable_parameters: int
    started_at: datetime
    seconds: float
    resumed_from_step: int | None = None
    train_loss: list[HeldOutPoint] = Field(default_factory=list)  # running mean, per eval
    heldout: list[HeldOutPoint] = Field(default_factory=list)
    heldout_replies: dict[str, float] = Field(default_factory=dict)  # generated on held-out
    command: str = ""
