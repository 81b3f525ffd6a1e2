"""PGCGM-style conditional crystal generator and where its roughness lives (issue 13, notebook 01).

Public API::

    from matdiscovery.generator import generate, load_generator, sample
    model = load_generator("models/generator/generator.pt")
    s = generate(["Ba", "Ti", "O"], 221, z=None, model=model, seed=0)           # pymatgen Structure
    s = generate(["Ba", "Ti", "O"], 221, model=model, seed=0, decoder="snap")   # Wyckoff snapping, no merging
    frame = sample(model, 100, seed=0, decoders=("pgcgm", "snap"))              # CDVAE-layout rows + flags

Modules: ``data`` (PGCGM-like training set), ``symmetry`` (operations, merging, Wyckoff
snapping), ``model`` (generator + critic), ``train`` (the training stage), ``sampling``
(decoders, flags, generate/sample), ``smoothness`` (staged smoothness, controls, verdict rule),
``metrics`` (validity as the field reports it), ``study`` (notebook 01), ``plotting``. Training:
``python -m matdiscovery.generator.train`` or ``generator.train.run_training``.
"""

from matdiscovery.generator.data import Record, TrainingSet, build_training_set, canonical_order, record_from_structure
from matdiscovery.generator.model import CrystalGAN, load_generator
from matdiscovery.generator.sampling import DECODERS, Generated, decode_crystal, generate, sample

__all__ = [
    "DECODERS", "CrystalGAN", "Generated", "Record", "TrainingSet", "build_training_set", "canonical_order",
    "decode_crystal", "generate", "load_generator", "record_from_structure", "sample",
]
