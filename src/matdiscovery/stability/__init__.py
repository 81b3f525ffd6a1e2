"""Stability screening of crystals with two independent judges (notebook 02).

- :mod:`~matdiscovery.stability.validation`: structure sanity checks with reasons;
- :mod:`~matdiscovery.stability.hull`: JARVIS-DFT convex hull → energy above hull (eV/atom);
- :mod:`~matdiscovery.stability.composition_judge`: Roost-style formation-energy model + Magpie/RF baseline;
- :mod:`~matdiscovery.stability.chgnet_judge`: pretrained CHGNet energies → formation energies;
- :mod:`~matdiscovery.stability.screening`: both judges + hull over a set of structures;
- :mod:`~matdiscovery.stability.ood`: distances of materials to the judge's training data.
"""

from matdiscovery.stability.hull import FormationEnergyHull
from matdiscovery.stability.validation import StructureCheck, check_structure, check_structures, invalid_summary

__all__ = ["FormationEnergyHull", "StructureCheck", "check_structure", "check_structures", "invalid_summary"]
