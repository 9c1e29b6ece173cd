"""Semi-supervised algorithms, registered by name (see ``hdl.ssl.base``).

Every module in this package is imported here, so dropping a new file with a
``@register``-ed class into ``hdl/ssl/`` is all it takes to add a method.
"""

import importlib
import pkgutil

from hdl.ssl.base import REGISTRY, Algorithm, Batch, StepContext, Views, algorithm_class, build_algorithm, config_fields, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "REGISTRY",
    "Algorithm",
    "Batch",
    "StepContext",
    "Views",
    "algorithm_class",
    "build_algorithm",
    "config_fields",
    "register",
]
