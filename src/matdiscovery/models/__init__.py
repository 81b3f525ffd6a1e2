"""Shared neural networks (PyTorch / PyTorch Geometric ``nn.Module`` s over ``Data``/``Batch``)."""

from matdiscovery.models.roost import Roost, WeightedAttentionLayer
from matdiscovery.models.training import TrainHistory, fit, masked_loss, predict

__all__ = ["Roost", "WeightedAttentionLayer", "TrainHistory", "fit", "masked_loss", "predict"]
