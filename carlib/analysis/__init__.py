"""Analysis on top of the core: studies and their result cache, selectivity, patches,
plotting and figures, profiles, and ``make reproduce``; the statistics the claims are tested
with (``stats``, ``reliability``, ``labels``, ``claims``).

The core (:func:`carlib.car_index`, :func:`carlib.greedy_prune`, :func:`carlib.prune_filters`,
:func:`carlib.count`, the loaders) never imports this package.
"""

from ..car import overall_from_per_class
from .profiles import PROFILES, Profile, get_profile
from .study import Study

__all__ = ["Study", "overall_from_per_class", "Profile", "PROFILES", "get_profile"]
