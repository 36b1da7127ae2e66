"""Explanation-map methods, looked up by name: ``compute_maps("gae", model, images01, classes)``.

Importing the package registers every method module below.
"""

from .registry import METHODS, Method, compute_maps, control_methods, methods_for_family, register
from . import vit, vit_lrp, cnn, cnn_extra, controls  # noqa: F401,E402  (registration side effect)

__all__ = ["METHODS", "Method", "compute_maps", "control_methods", "methods_for_family", "register"]
