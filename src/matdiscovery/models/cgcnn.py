"""A CGCNN-style crystal graph network (Xie & Grossman, PRL 2018) in PyTorch Geometric.

Inputs are crystal graphs from :func:`matdiscovery.hessian.graphs.crystal_graph`: node
features ``x`` (element feature table), edge features ``edge_attr`` (Gaussian expansion of the
interatomic distance, Å) and ``edge_index`` (neighbours within a cutoff, periodic images
included). Each layer is PyG's :class:`~torch_geometric.nn.CGConv` (gated convolution
``h_i += Σ_j σ(W_f z_ij) ⊙ softplus(W_s z_ij)``, ``z_ij = [h_i, h_j, e_ij]``); a mean pool and an
MLP give the targets. No batch norm, so the loss is a smooth function of the weights alone.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import CGConv, global_mean_pool

from matdiscovery.composition import ELEMENT_FEATURE_DIM


class CGCNN(nn.Module):
    """Crystal graph → ``(n_graphs, n_targets)`` in the units of the labels trained on."""

    def __init__(
        self,
        n_targets: int = 1,
        dim: int = 32,
        n_layers: int = 3,
        edge_dim: int = 32,
        in_features: int = ELEMENT_FEATURE_DIM,
        hidden: int = 64,
    ):
        super().__init__()
        if n_targets < 1 or dim < 1 or n_layers < 1 or edge_dim < 1:
            raise ValueError(
                f"CGCNN needs n_targets, dim, n_layers, edge_dim ≥ 1; got {n_targets}, {dim}, {n_layers}, {edge_dim}"
            )
        self.n_targets = n_targets
        self.edge_dim = edge_dim
        self.embed_atoms = nn.Linear(in_features, dim)
        self.convs = nn.ModuleList(CGConv(dim, dim=edge_dim, aggr="mean") for _ in range(n_layers))
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.Softplus(), nn.Linear(hidden, n_targets))

    def embed(self, batch: Batch) -> torch.Tensor:
        if batch.edge_attr.shape[-1] != self.edge_dim:
            raise ValueError(f"edge_attr has {batch.edge_attr.shape[-1]} features, the model expects {self.edge_dim}")
        h = self.embed_atoms(batch.x)
        for conv in self.convs:
            h = nn.functional.softplus(conv(h, batch.edge_index, batch.edge_attr))
        index = batch.batch if getattr(batch, "batch", None) is not None else h.new_zeros(h.size(0), dtype=torch.long)
        return global_mean_pool(h, index)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.embed(batch))
