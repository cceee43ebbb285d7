"""A tiny untrained generator checkpoint for tests of generation, animation and figures."""
from __future__ import annotations

import torch

from speechanim.checkpoint import model_config_dict, save_checkpoint
from speechanim.models import Generator, ModelConfig


def tiny_generator_checkpoint(path, size, sample_rate, *, window_s: float = 0.16, seed: int = 0,
                              passes: int = 3, steps: int = 20):
    """Save a tiny generator (width 0.125) whose batch-norm statistics are a plain average over
    ``passes`` forward passes on random inputs, so that its eval-mode frames have contrast instead
    of a flat grey; returns ``path``."""
    cfg = ModelConfig(image_size=tuple(size), width=0.125, sample_rate=sample_rate, audio_window_s=window_s)
    torch.manual_seed(seed)
    g = Generator(cfg)
    for m in g.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a plain average over the passes below
    with torch.no_grad():
        for _ in range(passes):
            g(torch.rand(2, 3, *cfg.image_size) * 2 - 1, 0.3 * torch.randn(2, steps, cfg.window))
    save_checkpoint(path, {"model_config": model_config_dict(cfg), "generator": g.state_dict(), "variant": "full",
                           "dataset": "test", "epoch": 0})
    return path
