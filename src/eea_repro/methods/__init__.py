"""Explanation-map methods (``maps.smk``), looked up by name: ``compute_maps("gae", model, images01, classes)``.

Importing the package registers every method module below; ``stage`` holds the maps stage's entry function.
"""

from eea_repro.methods.registry import (METHODS, Method, compute_maps, control_methods, method_label, methods_for_family,
                                        register)
from eea_repro.methods import vit, vit_lrp, cnn, cnn_extra, controls  # noqa: F401,E402  (registration side effect)

__all__ = ["METHODS", "Method", "compute_maps", "control_methods", "method_label", "methods_for_family", "register"]
