"""matdiscovery: reproducible analyses of ML-driven materials discovery.

Modules (one concern each):

- :mod:`matdiscovery.paths`       project root, data, metrics and report locations
- :mod:`matdiscovery.chemistry`   formula parsing (SuperCon notation) and element checks
- :mod:`matdiscovery.datasets`    one typed loader per dataset in the team's data catalog
- :mod:`matdiscovery.composition` element features, Magpie-style statistics, composition graphs
- :mod:`matdiscovery.models`      shared neural networks (Roost-style composition network)
- :mod:`matdiscovery.reporting`   metrics files, figure style, report index
- :mod:`matdiscovery.pipeline`    the Papermill/nbconvert runner behind every DVC stage
"""

__version__ = "0.1.0"
