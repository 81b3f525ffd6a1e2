"""Graphs for the multi-task benchmarks: crystals (pymatgen Structure → CGCNN graph),
molecules (SMILES → RDKit graph) and compositions (via :mod:`matdiscovery.composition`).

Every graph carries ``y`` of shape ``(1, n_targets)`` with NaN for a missing label.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
from pymatgen.core import Structure
from torch_geometric.data import Batch, Data

from matdiscovery.composition import element_table


def gaussian_expansion(distances: np.ndarray, d_min: float = 0.0, d_max: float = 6.0, n: int = 32) -> np.ndarray:
    """``(len(distances), n)`` Gaussian basis of distances (Å) with centres on ``[d_min, d_max]``
    and width equal to their spacing (CGCNN's edge features); values below 1e-12 are set to 0."""
    centres = np.linspace(d_min, d_max, n)
    width = centres[1] - centres[0] if n > 1 else 1.0
    out = np.exp(-((np.asarray(distances)[:, None] - centres[None, :]) ** 2) / width**2)
    # far tails underflow to subnormal float32 numbers, which make CPU matrix products (and so
    # every backward pass) several times slower; they carry no information, so zero them
    out[out < 1e-12] = 0.0
    return out


def crystal_graph(
    structure: Structure, y: Sequence[float] | None = None, cutoff: float = 6.0, max_neighbors: int = 12,
    n_gaussians: int = 32,
) -> Data:
    """A periodic crystal graph: each site linked to its ``max_neighbors`` nearest neighbours
    (periodic images included; neighbours tied with the last one are kept too) within ``cutoff`` Å. ``x``: element features of
    :func:`~matdiscovery.composition.element_table`; ``edge_attr``: Gaussian-expanded distances;
    ``edge_index``: (source = neighbour, target = centre)."""
    if not isinstance(structure, Structure):
        raise TypeError(f"expected a pymatgen Structure, got {type(structure).__name__}")
    if cutoff <= 0 or max_neighbors < 1:
        raise ValueError(f"cutoff must be > 0 Å and max_neighbors ≥ 1; got {cutoff}, {max_neighbors}")
    zs = np.array([site.specie.Z for site in structure])
    if zs.max() >= element_table().shape[0]:
        raise ValueError(f"structure {structure.formula} has an element beyond the feature table")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        centre, neighbour, _, dist = structure.get_neighbor_list(r=cutoff)
    src, dst, dd = [], [], []
    for i in range(len(structure)):
        sel = np.flatnonzero((centre == i) & (dist > 1e-8))
        sel = sel[np.argsort(dist[sel], kind="stable")]
        if len(sel) > max_neighbors:  # keep ties with the last neighbour: independent of site order
            sel = sel[dist[sel] <= dist[sel[max_neighbors - 1]] + 1e-6]
        src.extend(neighbour[sel])
        dst.extend([i] * len(sel))
        dd.extend(dist[sel])
    if not src:
        raise ValueError(f"no neighbours within {cutoff} Å in {structure.formula}; increase cutoff")
    data = Data(
        x=torch.as_tensor(element_table()[zs]),
        edge_index=torch.as_tensor(np.array([src, dst]), dtype=torch.long),
        edge_attr=torch.as_tensor(gaussian_expansion(np.array(dd), 0.0, cutoff, n_gaussians), dtype=torch.float32),
        z=torch.as_tensor(zs),
    )
    if y is not None:
        data.y = torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(1, -1))
    return data


def molecule_graph(smiles: str, y: Sequence[float] | None = None) -> Data:
    """A heavy-atom molecular graph from SMILES via RDKit (:func:`torch_geometric.utils.from_smiles`;
    hydrogens become the atoms' hydrogen-count feature): 9 categorical atom and 3 categorical
    bond features."""
    from rdkit import Chem, RDLogger
    from torch_geometric.utils import from_smiles

    RDLogger.DisableLog("rdApp.*")
    if not isinstance(smiles, str) or Chem.MolFromSmiles(smiles) is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}")
    data = from_smiles(smiles)
    if data.num_nodes == 0:
        raise ValueError(f"SMILES {smiles!r} has no atoms")
    data.edge_attr = data.edge_attr.reshape(-1, 3)
    if y is not None:
        data.y = torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(1, -1))
    return data


class GraphStore:
    """Many small graphs concatenated once, so that a mini-batch is a few vectorised index
    operations instead of :meth:`Batch.from_data_list` over Python objects (the per-epoch
    collation cost of a ``DataLoader``).

    Node-level tensors (``x``, ``weight``, ``z``, …), edge-level tensors (``edge_attr``) and the
    local ``edge_index`` of each graph are stored back to back with ``node_ptr``/``edge_ptr``
    offsets; ``y`` is ``(n_graphs, n_targets)`` (NaN = missing label). Non-tensor attributes
    (e.g. a formula string) are dropped.
    """

    def __init__(self, graphs: Sequence[Data]):
        if not graphs:
            raise ValueError("GraphStore needs at least one graph")
        first = graphs[0]
        self.node_keys = [k for k in first.keys() if torch.is_tensor(first[k]) and first.is_node_attr(k)]
        self.edge_keys = [k for k in first.keys()
                          if torch.is_tensor(first[k]) and first.is_edge_attr(k) and k != "edge_index"]
        n_nodes = torch.tensor([g.num_nodes for g in graphs])
        n_edges = torch.tensor([g.edge_index.shape[1] for g in graphs])
        self.node_ptr = torch.cat([torch.zeros(1, dtype=torch.long), n_nodes.cumsum(0)])
        self.edge_ptr = torch.cat([torch.zeros(1, dtype=torch.long), n_edges.cumsum(0)])
        self.nodes = {k: torch.cat([g[k] for g in graphs]) for k in self.node_keys}
        self.edges = {k: torch.cat([g[k] for g in graphs]) for k in self.edge_keys}
        self.edge_index = torch.cat([g.edge_index for g in graphs], dim=1)  # local (per-graph) indices
        self.y = torch.cat([g.y for g in graphs]) if getattr(first, "y", None) is not None else None

    def __len__(self) -> int:
        return len(self.node_ptr) - 1

    @staticmethod
    def _ranges(ptr: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenated ``arange(ptr[i], ptr[i+1])`` over ``idx`` and the per-range lengths."""
        counts = ptr[idx + 1] - ptr[idx]
        starts = torch.repeat_interleave(ptr[idx], counts)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        return starts + offsets, counts

    def batch(self, idx) -> Batch:
        """The graphs ``idx`` (in that order) as one PyG :class:`Batch`."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long).reshape(-1)
        if len(idx) == 0:
            raise ValueError("cannot batch zero graphs")
        if int(idx.min()) < 0 or int(idx.max()) >= len(self):
            raise IndexError(f"graph index out of range for a store of {len(self)} graphs")
        node_sel, n_counts = self._ranges(self.node_ptr, idx)
        edge_sel, e_counts = self._ranges(self.edge_ptr, idx)
        new_ptr = torch.cat([torch.zeros(1, dtype=torch.long), n_counts.cumsum(0)])
        shift = torch.repeat_interleave(new_ptr[:-1], e_counts)
        out = {k: v[node_sel] for k, v in self.nodes.items()}
        out.update({k: v[edge_sel] for k, v in self.edges.items()})
        out["edge_index"] = self.edge_index[:, edge_sel] + shift
        if self.y is not None:
            out["y"] = self.y[idx]
        out["batch"] = torch.repeat_interleave(torch.arange(len(idx)), n_counts)
        out["ptr"] = new_ptr
        return Batch(**out)

    def graph(self, i: int) -> Data:
        """Graph ``i`` as a plain :class:`Data` (for code that wants a list of graphs)."""
        b = self.batch([i])
        return Data(**{k: b[k] for k in b.keys() if k not in ("batch", "ptr")})
