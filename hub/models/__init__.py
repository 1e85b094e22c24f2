"""Models in the hub: the HubModel wrapper, the family registry, one file per model kind."""
from hub.models.families import FAMILIES, Family, family_for, get_attr, register_family
from hub.models.model import Batch, HubModel, load_model

__all__ = ["FAMILIES", "Batch", "Family", "HubModel", "family_for", "get_attr", "load_model", "register_family"]
