"""PGCGM-style conditional crystal generator (issue 3, notebook 01).

Public API::

    from matdiscovery.generator import generate, load_generator, sample, train
    model = load_generator("models/generator/default.pt")
    s = generate(["Ba", "Ti", "O"], 221, z=None, model=model, seed=0)   # pymatgen Structure
    frame = sample(model, n=100, seed=0)                                 # CDVAE-layout rows + flags
"""

from matdiscovery.generator.data import Record, canonical_order, load_training_records, record_from_structure
from matdiscovery.generator.model import CrystalGAN, distance_loss
from matdiscovery.generator.sampling import Generated, generate, postprocess, sample, validity_metrics, write_samples_csv
from matdiscovery.generator.symmetry import build_structure, expand_orbits, symmetry_operations
from matdiscovery.generator.train import TrainConfig, load_generator, save_checkpoint, train

__all__ = [
    "CrystalGAN", "Generated", "Record", "TrainConfig", "build_structure", "canonical_order", "distance_loss",
    "expand_orbits", "generate", "load_generator", "load_training_records", "postprocess", "record_from_structure",
    "sample", "save_checkpoint", "symmetry_operations", "train", "validity_metrics", "write_samples_csv",
]
