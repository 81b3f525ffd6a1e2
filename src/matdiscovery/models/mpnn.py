"""A message-passing network for molecular graphs (Gilmer et al. 2017 family) in PyG.

Inputs are molecule graphs from :func:`matdiscovery.hessian.graphs.molecule_graph` (RDKit via
:func:`torch_geometric.utils.from_smiles`): ``x`` holds 9 categorical atom features (atomic
number, chirality, degree, formal charge, hydrogens, radicals, hybridisation, aromaticity,
ring membership) and ``edge_attr`` 3 categorical bond features (type, stereo, conjugation).
Each is embedded, then ``n_layers`` GINE convolutions (:class:`GINELayer`) with edge embeddings update the atoms;
a sum-and-mean pool and an MLP give the targets.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import global_add_pool, global_mean_pool

#: Sizes of the categorical vocabularies of ``torch_geometric.utils.smiles.x_map`` / ``e_map``.
ATOM_VOCAB = (119, 9, 11, 12, 9, 5, 8, 2, 2)
BOND_VOCAB = (22, 6, 2)


class CategoricalEmbedding(nn.Module):
    """Sum of one embedding per categorical column (values beyond a vocabulary raise).

    Computed as ``multi_hot(x) @ cat(tables)``: the same function as summing the looked-up
    rows, but one dense matrix product, which stays fast when many networks run stacked under
    :func:`torch.func.vmap` (batched embedding lookups and their sums are strided and slow there)."""

    def __init__(self, vocab: tuple[int, ...], dim: int):
        super().__init__()
        self.vocab = vocab
        self.tables = nn.ModuleList(nn.Embedding(n, dim) for n in vocab)

    def multi_hot(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, Σ vocab)`` 0/1 matrix with one 1 per categorical column."""
        if x.dim() != 2 or x.shape[1] != len(self.vocab):
            raise ValueError(f"expected (n, {len(self.vocab)}) categorical features, got {tuple(x.shape)}")
        x = x.long()
        vocab = torch.tensor(self.vocab, device=x.device)
        if (x < 0).any() or (x >= vocab).any():
            raise IndexError(f"categorical value out of range for vocabularies {self.vocab}")
        offsets = torch.cumsum(vocab, 0) - vocab
        out = torch.zeros((x.shape[0], int(vocab.sum())), device=x.device)
        return out.scatter_(1, x + offsets, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch.cat([t.weight for t in self.tables])
        return self.multi_hot(x).to(weight.dtype) @ weight


class GINELayer(nn.Module):
    """GINE convolution (Hu et al. 2020; PyG's :class:`~torch_geometric.nn.GINEConv` with
    ``train_eps=True``): ``h_i' = mlp((1 + ε) h_i + Σ_{j→i} relu(h_j + e_ji))``, written with
    ``index_select``/``index_add`` on the node axis so that it batches cleanly under
    :func:`torch.func.vmap` (many networks stacked)."""

    def __init__(self, dim: int):
        super().__init__()
        self.nn = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.eps = nn.Parameter(torch.zeros(1))

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index
        msg = torch.relu(h.index_select(-2, src) + edge_attr)
        agg = torch.zeros_like(h).index_add(-2, dst, msg)
        return self.nn((1 + self.eps) * h + agg)


class MPNN(nn.Module):
    """Molecule graph → ``(n_graphs, n_targets)`` in the units of the labels trained on."""

    def __init__(self, n_targets: int = 1, dim: int = 32, n_layers: int = 3, hidden: int = 64):
        super().__init__()
        if n_targets < 1 or dim < 1 or n_layers < 1:
            raise ValueError(f"MPNN needs n_targets, dim, n_layers ≥ 1; got {n_targets}, {dim}, {n_layers}")
        self.n_targets = n_targets
        self.atoms = CategoricalEmbedding(ATOM_VOCAB, dim)
        self.bonds = nn.ModuleList(CategoricalEmbedding(BOND_VOCAB, dim) for _ in range(n_layers))
        self.convs = nn.ModuleList(GINELayer(dim) for _ in range(n_layers))
        self.head = nn.Sequential(nn.Linear(2 * dim, hidden), nn.SiLU(), nn.Linear(hidden, n_targets))

    def embed(self, batch: Batch) -> torch.Tensor:
        h = self.atoms(batch.x)
        for conv, bonds in zip(self.convs, self.bonds):
            h = h + nn.functional.silu(conv(h, batch.edge_index, bonds(batch.edge_attr)))
        index = batch.batch if getattr(batch, "batch", None) is not None else h.new_zeros(h.size(0), dtype=torch.long)
        return torch.cat([global_add_pool(h, index) / 10.0, global_mean_pool(h, index)], dim=-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.embed(batch))
