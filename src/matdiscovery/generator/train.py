"""Training of the PGCGM-style generator (WGAN-GP + physics distance loss).

``python -m matdiscovery.generator.train`` reads the ``train_generator`` section of
``params.yaml`` (:class:`~matdiscovery.params.generator.TrainGeneratorParams`) and calls
:func:`run_training`, the one training path (the notebook's no-checkpoint fallback calls it too,
with small values). It writes to ``models/generator/``: ``generator.pt`` (weights, config,
records, loss log), the training set (``training_records.csv`` with the split,
``screening.csv``, ``training_set.json``), ``samples.csv`` and ``samples_structures.json.gz``
(``n_samples`` per decoder, seed ``sample_seed``, the same conditions and noise for every decoder;
CDVAE layout, see :func:`~matdiscovery.generator.sampling.write_samples`) and ``train_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from matdiscovery.composition import element_features
from matdiscovery.generator.data import Record, TrainingSet, build_training_set
from matdiscovery.generator.model import (
    N_BASIS,
    CrystalGAN,
    distance_loss,
    gradient_penalty,
    load_generator,
    n_parameters,
    save_checkpoint,
)
from matdiscovery.generator.symmetry import atomic_radius
from matdiscovery.params.generator import TrainGeneratorParams
from matdiscovery.progress import progress_bar


def select_records(records: list[Record], min_sg_count: int) -> tuple[list[Record], list[int]]:
    """Records whose space group has at least ``min_sg_count`` examples, and those groups (by count)."""
    counts = Counter(r.spacegroup for r in records)
    groups = [sg for sg, c in counts.most_common() if c >= min_sg_count]
    if not groups:
        raise ValueError(f"min_sg_count={min_sg_count}: no space group has that many records (counts: {dict(counts)})")
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


def train(records: list[Record], p: TrainGeneratorParams, progress: bool = True) -> tuple[CrystalGAN, pd.DataFrame]:
    """Train a :class:`CrystalGAN` on ``records``; returns the model (eval mode, float32) and a
    per-epoch log (critic Wasserstein estimate, gradient penalty, adversarial and distance loss in Å²)."""
    torch.set_num_threads(p.threads)
    torch.manual_seed(p.seed)
    gen = torch.Generator().manual_seed(p.seed)
    recs, groups = select_records(records, p.min_sg_count)
    loglen = np.log(np.array([r.lengths for r in recs]))
    model = CrystalGAN(groups, float(loglen.mean()), float(loglen.std() + 1e-6), noise_dim=p.noise_dim,
                       hidden=tuple(p.hidden), critic_hidden=tuple(p.critic_hidden))
    data = tensorise(recs, model)
    n = len(recs)
    bs = min(p.batch_size, n)
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=p.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(model.critic.parameters(), lr=p.lr, betas=(0.5, 0.9))

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if p.bf16 else nullcontext()

    def fake(z, cond, sg):
        with autocast():
            raw = model.raw(z, cond)
        return model.decode(raw.float(), sg)

    def critic(x):
        with autocast():
            return model.critic(x).float().squeeze(-1)

    log, start = [], time.perf_counter()
    for epoch in progress_bar(range(p.epochs), desc="train generator", progress=progress):
        perm = torch.randperm(n, generator=gen)
        sums, steps = Counter(), 0
        for it in range(0, n - bs + 1, bs):
            idx = perm[it: it + bs]
            cond, sg, radii = data["cond"][idx], data["sg_idx"][idx], data["radii"][idx]
            real = model.critic_features(cond, data["lengths"][idx], data["frac"][idx])
            for _ in range(p.n_critic):
                z = torch.randn(bs, p.noise_dim, generator=gen)
                with torch.no_grad():
                    lengths, frac = fake(z, cond, sg)
                fake_x = model.critic_features(cond, lengths, frac)
                d_loss = critic(fake_x).mean() - critic(real).mean()
                gp = gradient_penalty(model, real, fake_x, gen)
                opt_d.zero_grad()
                (d_loss + p.gp_weight * gp).backward()
                opt_d.step()
            z = torch.randn(bs, p.noise_dim, generator=gen)
            lengths, frac = fake(z, cond, sg)
            adv = -critic(model.critic_features(cond, lengths, frac)).mean()
            dist = distance_loss(frac, model.lattice(lengths, sg), radii, model.ops[sg], model.op_mask[sg]).mean()
            opt_g.zero_grad()
            (adv + p.dist_weight * dist).backward()
            opt_g.step()
            sums.update({"critic_wdist": -d_loss.item(), "gp": gp.item(), "adv": adv.item(), "dist_loss_A2": dist.item()})
            steps += 1
        log.append({"epoch": epoch, **{k: v / max(steps, 1) for k, v in sums.items()},
                    "seconds": time.perf_counter() - start})
    model.eval()
    model.train_config = p.model_dump()
    model.training_records = recs
    return model, pd.DataFrame(log)


def run_training(p: TrainGeneratorParams, out: str | Path, progress: bool = True) -> dict:
    """Build the training set, train, sample and write everything to ``out`` (module docstring).
    Returns the summary also written to ``train_summary.json`` (seconds per phase, sizes)."""
    from matdiscovery.generator.sampling import sample, write_samples

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    training_set = build_training_set(heldout_fraction=p.heldout_fraction, seed=p.seed, limit_per_split=p.limit_per_split,
                                      n_jobs=p.n_jobs, progress=progress)
    training_set.save(out)
    t1 = time.perf_counter()
    model, history = train(training_set.train, p, progress)
    save_checkpoint(model, out / "generator.pt", history)
    t2 = time.perf_counter()
    frame = sample(model, p.n_samples, seed=p.sample_seed, decoders=tuple(p.decoders), conditions=p.conditions,
                   progress=progress)
    write_samples(frame, out)
    t3 = time.perf_counter()
    summary = {
        "data_seconds": t1 - t0, "train_seconds": t2 - t1, "sample_seconds": t3 - t2, "total_seconds": t3 - t0,
        "records_train": len(model.training_records), "records_heldout": len(training_set.heldout),
        "spacegroups": model.spacegroups, "generator_parameters": n_parameters(model.generator),
        "critic_parameters": n_parameters(model.critic), "final": history.iloc[-1].to_dict(),
        "sample_flags": frame.groupby("variant")[["structural_valid", "compositional_valid", "spacegroup_match",
                                                    "valid_combined"]].mean().to_dict(orient="index"),
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def load_run(folder: str | Path) -> tuple[CrystalGAN, TrainingSet]:
    """The model and training set written by :func:`run_training` to ``folder``."""
    folder = Path(folder)
    return load_generator(folder / "generator.pt"), TrainingSet.load(folder)


def main(argv: list[str] | None = None) -> int:
    from matdiscovery.paths import models_dir

    parser = argparse.ArgumentParser(prog="python -m matdiscovery.generator.train", description=__doc__)
    parser.add_argument("--section", default="train_generator")
    parser.add_argument("--out", default=None, help="output folder (default models/generator)")
    args = parser.parse_args(argv)
    p = TrainGeneratorParams.from_yaml_section(args.section)
    summary = run_training(p, Path(args.out) if args.out else models_dir() / "generator")
    print(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
