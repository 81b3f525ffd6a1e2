"""A Roost-style composition network (Goodall & Lee, Nat. Commun. 2020).

A formula is a fully connected graph of its elements (:func:`matdiscovery.composition.composition_graph`).
Each message-passing layer updates an element from all others with soft attention whose
weights are scaled by the sender's atomic fraction; a fraction-weighted attention pool gives
the material embedding and an MLP the targets. Element inputs are our pymatgen-derived feature
table (Roost uses matscholar embeddings, which are not available offline).
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter, softmax

from matdiscovery.composition import ELEMENT_FEATURE_DIM


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_out))


class WeightedAttentionLayer(nn.Module):
    """One Roost message-passing step: ``h_i += Σ_heads Σ_j a_ij m(h_i, h_j)`` with
    ``a_ij ∝ w_j exp(g(h_i, h_j))`` normalised over the senders ``j`` of ``i``."""

    def __init__(self, dim: int, n_heads: int = 3, hidden: int | None = None):
        super().__init__()
        hidden = hidden or 2 * dim
        self.gates = nn.ModuleList(_mlp(2 * dim, hidden, 1) for _ in range(n_heads))
        self.messages = nn.ModuleList(_mlp(2 * dim, hidden, dim) for _ in range(n_heads))

    def forward(self, h: torch.Tensor, weight: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index
        pair = torch.cat([h[dst], h[src]], dim=-1)
        log_w = torch.log(weight[src].clamp_min(1e-12))
        update = torch.zeros_like(h)
        for gate, message in zip(self.gates, self.messages):
            alpha = softmax(gate(pair) + log_w, dst, num_nodes=h.size(0))
            update = update + scatter(alpha * message(pair), dst, dim=0, dim_size=h.size(0), reduce="sum")
        return h + update / len(self.gates)


class WeightedAttentionPool(nn.Module):
    """Fraction-weighted soft-attention pooling of element states into one vector per graph."""

    def __init__(self, dim: int, n_heads: int = 3):
        super().__init__()
        self.gates = nn.ModuleList(_mlp(dim, dim, 1) for _ in range(n_heads))
        self.values = nn.ModuleList(_mlp(dim, dim, dim) for _ in range(n_heads))

    def forward(self, h: torch.Tensor, weight: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        log_w = torch.log(weight.clamp_min(1e-12))
        out = h.new_zeros((n_graphs, h.size(-1)))
        for gate, value in zip(self.gates, self.values):
            alpha = softmax(gate(h) + log_w, batch, num_nodes=n_graphs)
            out = out + scatter(alpha * value(h), batch, dim=0, dim_size=n_graphs, reduce="sum")
        return out / len(self.gates)


class Roost(nn.Module):
    """Composition → targets. ``forward(batch)`` returns ``(n_graphs, n_targets)``;
    ``embed(batch)`` the ``(n_graphs, dim)`` material embedding (used for out-of-domain distances).

    Inputs are PyG batches of :func:`~matdiscovery.composition.composition_graph` (``x``,
    ``weight``, ``edge_index``). Targets are in the units of the labels trained on.
    """

    def __init__(
        self,
        n_targets: int = 1,
        dim: int = 64,
        n_layers: int = 3,
        n_heads: int = 3,
        in_features: int = ELEMENT_FEATURE_DIM,
        dropout: float = 0.0,
    ):
        super().__init__()
        if n_targets < 1 or dim < 1 or n_layers < 0 or n_heads < 1:
            raise ValueError("Roost needs n_targets ≥ 1, dim ≥ 1, n_layers ≥ 0, n_heads ≥ 1")
        self.n_targets = n_targets
        self.embed_elements = nn.Linear(in_features, dim)
        self.layers = nn.ModuleList(WeightedAttentionLayer(dim, n_heads) for _ in range(n_layers))
        self.pool = WeightedAttentionPool(dim, n_heads)
        self.head = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Dropout(dropout), nn.Linear(2 * dim, n_targets))

    def embed(self, batch: Batch) -> torch.Tensor:
        h = self.embed_elements(batch.x)
        for layer in self.layers:
            h = layer(h, batch.weight, batch.edge_index)
        graph_index = batch.batch if getattr(batch, "batch", None) is not None else h.new_zeros(h.size(0), dtype=torch.long)
        n_graphs = int(batch.num_graphs) if hasattr(batch, "num_graphs") else 1
        return self.pool(h, batch.weight, graph_index, n_graphs)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.embed(batch))
