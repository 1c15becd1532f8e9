"""The loss curve of a training run, as a PNG beside the adapter."""

from __future__ import annotations

from pathlib import Path

from lectern.optional import require
from model.train.lora_config import GeneratorTrainingRecord


def plot_losses(record: GeneratorTrainingRecord, path: Path) -> None:
    matplotlib = require("matplotlib", "ingest")
    matplotlib.use("Agg")  # no display here; never opens a window
    plt = require("matplotlib.pyplot", "ingest")
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for points, label in ((record.train_loss, "train (mean since last point)"),
                          (record.heldout, "held-out")):
        if points:
            ax.plot([p.step for p in points], [p.loss for p in points], marker="o", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (reply tokens)")
    ax.set_title(f"LoRA on {Path(record.base_folder).name}: {record.examples_seen} examples")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
