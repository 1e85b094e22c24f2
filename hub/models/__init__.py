"""Models in the hub: the HubModel wrapper, the family registry, one file per model kind.

``load_model(path, kind=...)`` loads any kind through the kind table (hub/models/kinds.py).
"""
from hub.models.families import FAMILIES, Family, family_for, get_attr, register_family
from hub.models.kinds import KINDS, load_model
from hub.models.model import Batch, HubModel

__all__ = ["FAMILIES", "KINDS", "Batch", "Family", "HubModel", "family_for", "get_attr", "load_model",
           "register_family"]
