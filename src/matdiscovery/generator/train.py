"""Training of the PGCGM-style generator (WGAN-GP + distance loss, optional smoothness penalty).

``python -m matdiscovery.generator.train`` reads the ``train_generator`` section of
``params.yaml``, builds the training records once (:mod:`matdiscovery.generator.data`) and
trains each variant listed there (``default``: PGCGM losses; ``smooth``: plus the finite-
difference Lipschitz penalty of :func:`smoothness_penalty`), writing
``models/generator/<variant>.pt``, ``models/generator/training_records.csv``,
``models/generator/samples.csv`` (``n_samples`` per variant, seed ``sample_seed``, the same
conditions and noise for every variant; CDVAE layout, see
:func:`~matdiscovery.generator.sampling.write_samples_csv`) and ``train_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from matdiscovery.composition import element_features
from matdiscovery.generator.data import Record, records_to_frame
from matdiscovery.generator.model import N_BASIS, CrystalGAN, atomic_radius, distance_loss, gradient_penalty


@dataclass
class TrainConfig:
    """Hyper-parameters (lengths in Å; ``max_seconds`` caps wall time per variant)."""

    noise_dim: int = 128
    hidden: int = 256
    critic_hidden: int = 256
    epochs: int = 150
    batch_size: int = 64
    lr: float = 1e-3
    n_critic: int = 3
    gp_weight: float = 10.0
    dist_weight: float = 0.02    # larger weights inflate the cells (the easy way out of overlaps)
    smooth_weight: float = 0.0   # > 0: the regularised ("smooth") variant
    smooth_sigma: float = 0.1    # finite-difference step on noise and element features
    min_sg_count: int = 5        # space groups with fewer training records are dropped
    seed: int = 0
    max_seconds: float | None = None
    threads: int | None = None
    extra: dict = field(default_factory=dict)


def select_records(records: list[Record], min_sg_count: int) -> tuple[list[Record], list[int]]:
    """Records whose space group has at least ``min_sg_count`` examples, and those groups (by count)."""
    counts = Counter(r.spacegroup for r in records)
    groups = [sg for sg, c in counts.most_common() if c >= min_sg_count]
    if not groups:
        raise ValueError(f"no space group has >= {min_sg_count} records (counts: {dict(counts)})")
    return [r for r in records if r.spacegroup in groups], groups


def tensorise(records: list[Record], model: CrystalGAN) -> dict[str, torch.Tensor]:
    """Conditioning, space-group index, radii (Å), tied lengths (Å) and basis coordinates."""
    feats = np.stack([element_features(r.elements).reshape(-1) for r in records]).astype(np.float32)
    sg_idx = torch.tensor([model.sg_index(r.spacegroup) for r in records])
    onehot = torch.nn.functional.one_hot(sg_idx, model.n_sg).float()
    radii = torch.tensor([[atomic_radius(e) for e in r.elements] for r in records], dtype=torch.float32)
    lengths = torch.tensor([r.lengths for r in records], dtype=torch.float32)
    frac = torch.tensor([r.frac for r in records], dtype=torch.float32).view(-1, N_BASIS, 3)
    return {"cond": torch.cat([torch.from_numpy(feats), onehot], 1), "sg_idx": sg_idx, "radii": radii,
            "lengths": lengths, "frac": frac}


def smoothness_penalty(model: CrystalGAN, z: torch.Tensor, cond: torch.Tensor, sigma: float) -> torch.Tensor:
    """Finite-difference local Lipschitz penalty E‖G(x+δ) − G(x)‖² / ‖δ‖² on the generator's raw
    output, δ ~ N(0, σ²) on the noise and the element features (not the space-group one-hot)."""
    n_feat = model.cond_dim - model.n_sg
    dz = sigma * torch.randn_like(z)
    dc = torch.zeros_like(cond)
    dc[:, :n_feat] = sigma * torch.randn_like(cond[:, :n_feat])
    out0 = model.raw(z, cond)
    out1 = model.raw(z + dz, cond + dc)
    step2 = (dz**2).sum(1) + (dc**2).sum(1)
    return (((out1 - out0) ** 2).sum(1) / step2).mean()


def train(records: list[Record], config: TrainConfig | None = None, progress: bool = True, **overrides
          ) -> tuple[CrystalGAN, pd.DataFrame]:
    """Train a :class:`CrystalGAN` on ``records``; returns the model (eval mode) and a per-epoch log.

    Keyword overrides set fields of :class:`TrainConfig` (e.g. ``train(recs, epochs=5)`` for a
    seconds-long smoke run).
    """
    cfg = TrainConfig(**{**asdict(config or TrainConfig()), **overrides})
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    recs, groups = select_records(records, cfg.min_sg_count)
    loglen = np.log(np.array([r.lengths for r in recs]))
    model = CrystalGAN(groups, float(loglen.mean()), float(loglen.std() + 1e-6),
                       noise_dim=cfg.noise_dim, hidden=cfg.hidden, critic_hidden=cfg.critic_hidden)
    data = tensorise(recs, model)
    n = len(recs)
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(model.critic.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    log, start = [], time.perf_counter()
    bs = min(cfg.batch_size, n)
    for epoch in tqdm(range(cfg.epochs), desc=f"train (smooth={cfg.smooth_weight})", disable=not progress):
        perm = torch.randperm(n, generator=gen)
        sums = Counter()
        steps = 0
        for it in range(0, n - bs + 1, bs):
            idx = perm[it : it + bs]
            cond, sg, radii = data["cond"][idx], data["sg_idx"][idx], data["radii"][idx]
            real = model.critic_features(cond, data["lengths"][idx], data["frac"][idx])
            # critic
            for _ in range(cfg.n_critic):
                z = torch.randn(bs, cfg.noise_dim, generator=gen)
                with torch.no_grad():
                    lengths, frac = model(z, cond, sg)
                fake = model.critic_features(cond, lengths, frac)
                d_loss = model.critic(fake).mean() - model.critic(real).mean()
                gp = gradient_penalty(model, cond, real, fake)
                opt_d.zero_grad()
                (d_loss + cfg.gp_weight * gp).backward()
                opt_d.step()
            # generator
            z = torch.randn(bs, cfg.noise_dim, generator=gen)
            lengths, frac = model(z, cond, sg)
            adv = -model.score(cond, lengths, frac).mean()
            dist = distance_loss(frac, model.lattice(lengths, sg), radii, model.ops[sg], model.op_mask[sg]).mean()
            loss = adv + cfg.dist_weight * dist
            smooth = torch.zeros(())
            if cfg.smooth_weight > 0:
                smooth = smoothness_penalty(model, z, cond, cfg.smooth_sigma)
                loss = loss + cfg.smooth_weight * smooth
            opt_g.zero_grad()
            loss.backward()
            opt_g.step()
            sums.update({"critic_wdist": -d_loss.item(), "gp": gp.item(), "adv": adv.item(),
                         "dist_loss_A2": dist.item(), "smooth_pen": smooth.item()})
            steps += 1
        log.append({"epoch": epoch, **{k: v / max(steps, 1) for k, v in sums.items()},
                    "seconds": time.perf_counter() - start})
        if cfg.max_seconds is not None and time.perf_counter() - start > cfg.max_seconds:
            break
    model.eval()
    model.train_config = asdict(cfg)
    model.training_records = recs
    return model, pd.DataFrame(log)


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
                                "or train one with matdiscovery.generator.train()")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    model = CrystalGAN(**blob["config"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    model.train_config = blob.get("train_config", {})
    model.training_records = [Record(**{**r, "elements": tuple(r["elements"]), "lengths": tuple(r["lengths"]),
                                        "frac": tuple(tuple(f) for f in r["frac"])}) for r in blob.get("records", [])]
    model.history = pd.DataFrame(blob["history"]) if blob.get("history") else None
    return model


def main(argv: list[str] | None = None) -> int:
    from matdiscovery.generator.data import load_training_records
    from matdiscovery.generator.sampling import sample, write_samples_csv
    from matdiscovery.paths import models_dir
    from matdiscovery.pipeline import load_params

    parser = argparse.ArgumentParser(prog="python -m matdiscovery.generator.train", description=__doc__)
    parser.add_argument("--section", default="train_generator")
    parser.add_argument("--out", default=None, help="output folder (default models/generator)")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long check: 30 structures per split, 2 epochs, 20 samples (use with --out)")
    args = parser.parse_args(argv)
    params = dict(load_params(args.section))
    if args.smoke:
        params.update(limit_per_split=30, epochs=2, n_samples=20, min_sg_count=1)
    variants = params.pop("variants")
    limit = params.pop("limit_per_split", None)
    n_samples = int(params.pop("n_samples", 1000))
    sample_seed = int(params.pop("sample_seed", params.get("seed", 0)))
    threads = params.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    out = Path(args.out) if args.out else models_dir() / "generator"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    records, provenance = load_training_records(limit=limit)
    prep_s = time.perf_counter() - t0
    records_to_frame(records).to_csv(out / "training_records.csv", index=False)
    summary = {"data_prep_seconds": prep_s, "provenance": provenance.to_dict(orient="records")}
    frames = []
    for name, overrides in variants.items():
        t1 = time.perf_counter()
        model, history = train(records, TrainConfig(**{**params, **(overrides or {})}))
        save_checkpoint(model, out / f"{name}.pt", history)
        summary[name] = {"seconds": time.perf_counter() - t1, "epochs": len(history),
                         "records": len(model.training_records), "spacegroups": model.spacegroups,
                         "parameters_generator": sum(p.numel() for p in model.generator.parameters()),
                         "final": history.iloc[-1].to_dict()}
        t2 = time.perf_counter()
        frames.append(sample(model, n_samples, seed=sample_seed, variant=name))
        summary[name]["sample_seconds"] = time.perf_counter() - t2
        summary[name]["sample_flags"] = frames[-1][["structural_valid", "compositional_valid", "pgcgm_valid"]].mean().to_dict()
        print(name, json.dumps(summary[name], default=float))
    write_samples_csv(frames, out / "samples.csv")
    summary["total_seconds"] = time.perf_counter() - t0
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
