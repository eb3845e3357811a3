"""Checkpoints that carry their configuration, and weights read back from an exported ONNX file."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import torch

from model.config import DANConfig
from model.dan import DAN

log = logging.getLogger(__name__)


def save_checkpoint(path: Path, model: DAN, **state: Any) -> None:
    """Write the model's config and weights plus any training state; atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model_config": model.config.to_dict(), "model": model.state_dict(), **state}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    if "model_config" not in data or "model" not in data:
        raise ValueError(f"{path} is not a DAN checkpoint: expected keys model_config and model")
    return data


def model_from_checkpoint(path: Path) -> DAN:
    data = load_checkpoint(path)
    model = DAN(DANConfig.from_dict(data["model_config"]))
    model.load_state_dict(data["model"])
    return model


def load_weights(path: Path) -> tuple[DANConfig, dict[str, torch.Tensor]]:
    """Config and state dict from a checkpoint (.pt) or an exported model (.onnx)."""
    if path.suffix == ".onnx":
        from training.export import read_onnx_weights

        return read_onnx_weights(path)
    data = load_checkpoint(path)
    return DANConfig.from_dict(data["model_config"]), data["model"]


def stage_keys(model: DAN, stages: Iterable[int]) -> set[str]:
    """The state-dict keys of ``stages`` (1-based): their networks and the connections into
    them (``DAN.stage_modules``); never the model's own buffers (mean shape, normalisation)."""
    names = {id(module): name for name, module in model.named_modules()}
    prefixes = tuple(f"{names[id(m)]}." for s in stages for m in model.stage_modules(s - 1))
    return {key for key in model.state_dict() if key.startswith(prefixes)}


def init_from(model: DAN, path: Path, stages: Collection[int] = ()) -> None:
    """Copy every matching weight of ``path`` into ``model`` (stages it lacks stay as they are).

    ``stages`` (1-based; empty: all) limits the copy to those stages' weights: the others keep
    their fresh initialisation. The model's own buffers (mean shape, normalisation images)
    always come from ``path``: the copied stages were trained with them.
    """
    config, state = load_weights(path)
    own = model.state_dict()
    others = stage_keys(model, set(range(1, model.config.num_stages + 1)) - set(stages))
    wanted = {k: v for k, v in state.items() if not stages or k not in others}
    loaded = {k: v for k, v in wanted.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(loaded))
    own.update(loaded)
    model.load_state_dict(own)
    log.info(
        "initialised %d tensors from %s (its config: %d stages%s); %d not used%s",
        len(loaded),
        path,
        config.num_stages,
        f"; stages {sorted(stages)} only" if stages else "",
        len(skipped),
        f": {skipped[:5]}..." if skipped else "",
    )
