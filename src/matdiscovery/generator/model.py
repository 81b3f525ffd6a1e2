"""PGCGM-style conditional WGAN: noise + (3 element-feature vectors, space group) → crystal.

The generator maps a standard-normal noise vector ``z`` and a conditioning vector (three 23-d
z-scored element-feature vectors from :func:`matdiscovery.composition.element_features`, in
electronegativity order, then a one-hot space group) to its *raw output*: three log-length
scores and a 2-d direction ``(u, v)`` per fractional coordinate of three basis atoms (one per
element). :meth:`CrystalGAN.decode` turns it into tied lattice lengths (Å) and basis coordinates;
the space group's affine operations expand the basis into the conventional cell. Differentiable
periodic distances between the basis atoms and all their symmetry images feed the physics loss
(:func:`distance_loss`). The critic sees the conditioning, normalised log-lengths and
``sin/cos(2π·frac)`` (periodic) coordinates.

Sizes: PGCGM's generator has 4,750,854 parameters and its critic 724,881 (counted from the layer
shapes of MilesZhao/PGCGM ``model.py``); :data:`PGCGM_GENERATOR_PARAMETERS`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Element
from torch import nn

from matdiscovery.composition import ELEMENT_FEATURE_DIM, element_features
from matdiscovery.generator.data import Record
from matdiscovery.generator.symmetry import (
    CRYSTAL_SYSTEMS,
    atomic_radius,
    check_spacegroup,
    crystal_system,
    symmetry_operations,
)

N_BASIS = 3
#: raw output size: 3 log-length scores + (u, v) for 3 × 3 coordinates
RAW_DIM = 3 + 2 * 3 * N_BASIS
PGCGM_GENERATOR_PARAMETERS = 4_750_854
PGCGM_CRITIC_PARAMETERS = 724_881


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with LeakyReLU(0.2) between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class CrystalGAN(nn.Module):
    """Generator + critic and the space-group tables they need.

    ``spacegroups``: the supported space-group numbers (conditioning one-hot order);
    ``loglen_mean/std``: statistics of log lattice lengths (ln Å) of the training set;
    ``hidden`` / ``critic_hidden``: widths of the hidden layers.
    """

    def __init__(self, spacegroups: list[int], loglen_mean: float, loglen_std: float, *,
                 noise_dim: int = 128, hidden: tuple[int, ...] = (256, 256, 256),
                 critic_hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        self.spacegroups = [check_spacegroup(s) for s in spacegroups]
        self.noise_dim = int(noise_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.critic_hidden = tuple(int(h) for h in critic_hidden)
        self.n_sg = len(self.spacegroups)
        self.cond_dim = N_BASIS * ELEMENT_FEATURE_DIM + self.n_sg
        ops = [symmetry_operations(s) for s in self.spacegroups]
        m = max(len(o) for o in ops)
        table = np.zeros((self.n_sg, m, 4, 4), dtype=np.float32)
        mask = np.zeros((self.n_sg, m), dtype=bool)
        ties = np.zeros((self.n_sg, 3), dtype=np.int64)
        gamma = np.zeros(self.n_sg, dtype=np.float32)
        for i, (s, o) in enumerate(zip(self.spacegroups, ops)):
            table[i, : len(o)] = o
            mask[i, : len(o)] = True
            idx, angles = CRYSTAL_SYSTEMS[crystal_system(s)]
            ties[i] = idx
            gamma[i] = angles[2]
        self.register_buffer("ops", torch.from_numpy(table))
        self.register_buffer("op_mask", torch.from_numpy(mask))
        self.register_buffer("ties", torch.from_numpy(ties))
        self.register_buffer("gamma", torch.from_numpy(gamma))
        self.register_buffer("loglen_stats", torch.tensor([loglen_mean, loglen_std], dtype=torch.float32))
        self.generator = mlp([self.noise_dim + self.cond_dim, *self.hidden, RAW_DIM])
        self.critic = mlp([self.cond_dim + 3 + 6 * N_BASIS, *self.critic_hidden, 1])

    # ------------------------------------------------------------------ conditioning
    def sg_index(self, spacegroup: int) -> int:
        n = check_spacegroup(spacegroup)
        if n not in self.spacegroups:
            raise ValueError(f"space group {n} was not in this generator's training set; "
                             f"supported: {self.spacegroups}")
        return self.spacegroups.index(n)

    def condition(self, elements: list[str], spacegroup: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        """``(cond (cond_dim,), sg index, radii (3,) Å)`` for three distinct elements (any order:
        they are put in canonical electronegativity order, the basis order of the output)."""
        from matdiscovery.generator.data import canonical_order

        elements = [str(e) for e in elements]
        if len(elements) != N_BASIS or len(set(elements)) != N_BASIS:
            raise ValueError(f"need three distinct elements, got {elements}")
        for e in elements:
            if not Element.is_valid_symbol(e):
                raise ValueError(f"unknown element symbol {e!r}")
        order = canonical_order(elements)
        feats = torch.from_numpy(element_features(order).reshape(-1).astype(np.float32))
        k = self.sg_index(spacegroup)
        onehot = torch.zeros(self.n_sg)
        onehot[k] = 1.0
        radii = torch.tensor([atomic_radius(e) for e in order], dtype=torch.float32)
        return torch.cat([feats, onehot]), k, radii

    # ------------------------------------------------------------------ generator
    def raw(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The generator's raw output ``(B, RAW_DIM)``: 3 log-length scores, then (u, v) for 9 coordinates."""
        return self.generator(torch.cat([z, cond], dim=-1))

    def decode(self, raw: torch.Tensor, sg_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tied lengths (B, 3) Å, basis frac (B, 3, 3) in [0, 1))`` from raw outputs:
        ``ln L = μ + σ·raw`` (training-set log-length statistics; clamped at ±6 σ); each coordinate
        from a 2-d direction ``(u, v)``: ``frac = atan2(v, u) / 2π mod 1`` (periodic, non-saturating)."""
        mu, sd = self.loglen_stats
        loglen = mu + sd * torch.clamp(raw[:, :3], -6.0, 6.0)
        lengths = torch.exp(torch.gather(loglen, 1, self.ties[sg_idx]))
        uv = raw[:, 3:].reshape(-1, N_BASIS, 3, 2)
        frac = torch.remainder(torch.atan2(uv[..., 1], uv[..., 0]) / (2 * torch.pi), 1.0)
        return lengths, frac

    def forward(self, z: torch.Tensor, cond: torch.Tensor, sg_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.raw(z, cond), sg_idx)

    def lattice(self, lengths: torch.Tensor, sg_idx: torch.Tensor) -> torch.Tensor:
        from matdiscovery.generator.symmetry import lattice_matrix_torch

        return lattice_matrix_torch(lengths, self.gamma[sg_idx])

    # ------------------------------------------------------------------ critic
    def critic_features(self, cond: torch.Tensor, lengths: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
        mu, sd = self.loglen_stats
        ang = 2 * torch.pi * frac.reshape(frac.shape[0], -1)
        return torch.cat([cond, (torch.log(lengths) - mu) / sd, torch.sin(ang), torch.cos(ang)], dim=-1)

    def score(self, cond: torch.Tensor, lengths: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
        return self.critic(self.critic_features(cond, lengths, frac)).squeeze(-1)

    def config(self) -> dict:
        mu, sd = self.loglen_stats.tolist()
        return {"spacegroups": self.spacegroups, "loglen_mean": mu, "loglen_std": sd,
                "noise_dim": self.noise_dim, "hidden": list(self.hidden), "critic_hidden": list(self.critic_hidden)}


def distance_loss(frac: torch.Tensor, lattice: torch.Tensor, radii: torch.Tensor, ops: torch.Tensor,
                  op_mask: torch.Tensor, min_factor: float = 0.75, merge_factor: float = 0.6) -> torch.Tensor:
    """Physics-guided overlap loss (Å²) per structure, shape ``(B,)``.

    For each basis atom ``i`` (``frac`` ``(B, k, 3)``) and the nearest periodic image
    (minimum-image convention in fractional coordinates) of every symmetry image of every basis
    atom ``j``: penalty ``relu(min_factor·(r_i + r_j) − d)²``. Images of the *same* basis atom
    closer than ``merge_factor·r_i`` are the atom itself (or collapse onto a special position,
    merged in post-processing) and are not penalised; a lattice length shorter than
    ``2·min_factor·r_i`` (an atom overlapping its own translate) is penalised the same way.
    ``lattice`` ``(B, 3, 3)`` rows in Å; ``radii`` ``(B, k)`` Å; ``ops`` ``(B, M, 4, 4)``;
    ``op_mask`` ``(B, M)``. Zero when all atoms are well separated.
    """
    rot, trans = ops[:, :, :3, :3], ops[:, :, :3, 3]
    images = torch.einsum("bmij,bkj->bkmi", rot, frac) + trans[:, None]          # (B, k, M, 3)
    diff = images[:, None] - frac[:, :, None, None]                              # (B, i, k, M, 3)
    diff = diff - torch.round(diff.detach())
    cart = torch.einsum("bikmj,bjl->bikml", diff, lattice)
    d = torch.sqrt((cart**2).sum(-1) + 1e-12)                                     # (B, i, k, M)
    k = frac.shape[1]
    rsum = (radii[:, :, None] + radii[:, None, :])[..., None]                    # (B, i, k, 1)
    same = torch.eye(k, dtype=torch.bool, device=frac.device)[None, :, :, None]
    self_image = same & (d.detach() < merge_factor * radii[:, :, None, None])
    valid = op_mask[:, None, None, :] & ~self_image
    pen = (torch.relu(min_factor * rsum - d) ** 2 * valid).sum(dim=(1, 2, 3))
    lat_len = lattice.norm(dim=-1)                                                # (B, 3)
    pen_lat = torch.relu(2 * min_factor * radii[:, :, None] - lat_len[:, None, :]) ** 2
    return pen + pen_lat.sum(dim=(1, 2))


def gradient_penalty(model: CrystalGAN, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """WGAN-GP penalty on critic features interpolated between real and fake samples."""
    eps = torch.rand(real.shape[0], 1, generator=generator)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = model.critic(mix).sum()
    (grad,) = torch.autograd.grad(out, mix, create_graph=True)
    return ((grad.norm(dim=1) - 1) ** 2).mean()


def save_checkpoint(model: CrystalGAN, path: str | Path, history: pd.DataFrame | None = None) -> Path:
    """Weights, architecture config, training config, training records and the loss log."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "config": model.config(),
        "state_dict": model.state_dict(),
        "train_config": getattr(model, "train_config", {}),
        "records": [r.to_dict() for r in getattr(model, "training_records", [])],
        "history": None if history is None else history.to_dict(orient="list"),
    }, path)
    return path


def load_generator(path: str | Path) -> CrystalGAN:
    """A trained :class:`CrystalGAN` (eval mode) from a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no generator checkpoint at {path}; run `dvc repro train_generator` "
                                "or matdiscovery.generator.train.run_training()")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    cfg = dict(blob["config"])
    model = CrystalGAN(cfg.pop("spacegroups"), cfg.pop("loglen_mean"), cfg.pop("loglen_std"), **cfg)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    model.train_config = blob["train_config"]
    model.training_records = [Record.from_dict(r) for r in blob["records"]]
    model.history = pd.DataFrame(blob["history"]) if blob["history"] else None
    return model
