"""Stability screening of crystals with two independent judges (notebook 02).

- :mod:`~matdiscovery.stability.validation`: structure sanity checks with reasons;
- :mod:`~matdiscovery.stability.hull`: JARVIS-DFT convex hull → energy above hull (eV/atom);
- :mod:`~matdiscovery.stability.composition_judge`: Roost-style formation-energy model + Magpie/RF baseline;
- :mod:`~matdiscovery.stability.chgnet_judge`: pretrained CHGNet energies (single points, batched);
- :mod:`~matdiscovery.stability.relax`: batched CHGNet FIRE relaxation (matches ``StructOptimizer``);
- :mod:`~matdiscovery.stability.sevennet_judge`: SevenNet, the second universal potential;
- :mod:`~matdiscovery.stability.energies`: formation energies, MP2020, chemistry offsets, absurd outputs;
- :mod:`~matdiscovery.stability.distributed`: the Dask sharded map (resumable);
- :mod:`~matdiscovery.stability.study`: notebook 02's study (:func:`run_screening`, metrics, tables);
- :mod:`~matdiscovery.stability.ood`: distances of materials to the judge's training data.
"""

from matdiscovery.stability.hull import FormationEnergyHull
from matdiscovery.stability.validation import StructureCheck, check_structure, check_structures, invalid_summary

__all__ = ["FormationEnergyHull", "StructureCheck", "check_structure", "check_structures", "invalid_summary"]
