"""A toy modality adapter defined outside the package (used by test_adding_a_modality)."""
from hub.contract import PairedSet, Side
from modalities.base import Adapter


class ShoutAdapter(Adapter):
    """Pairs a lower-case phrase with its upper-case version."""

    modality = "shout"

    def __init__(self, phrases: list[str], suffix: str = "!"):
        super().__init__()
        self.phrases, self.suffix = phrases, suffix

    def pairs(self, model=None):
        yield PairedSet("shout", Side([p for p in self.phrases], "text", "last", label="quiet"),
                        Side([p.upper() + self.suffix for p in self.phrases], "shout", "mean", label="loud"),
                        ids={"task": "shout", "lang": "en"})
