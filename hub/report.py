"""report.md: sections of short factual text, figures and small tables, written atomically."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hub.results import atomic_write_text


@dataclass
class Report:
    out: Path
    title: str
    sections: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def section(self, heading: str, text: str = "", figures: list[str | Path] = (),
                table: pd.DataFrame | None = None, floatfmt: str = ".3f") -> None:
        parts = [f"## {heading}", ""]
        if text:
            parts += [text.strip(), ""]
        for f in figures:
            rel = Path(f).relative_to(self.out) if Path(f).is_absolute() else Path(f)
            parts += [f"![{rel.stem}]({rel.as_posix()})", ""]
        if table is not None and len(table):
            parts += [_markdown_table(table, floatfmt), ""]
        self.sections.append("\n".join(parts))

    def write(self) -> Path:
        meta = "".join(f"- {k}: {v}\n" for k, v in self.meta.items())
        text = f"# {self.title}\n\n{meta}\n" + "\n".join(self.sections)
        return atomic_write_text(self.out / "report.md", text)


def _markdown_table(df: pd.DataFrame, floatfmt: str) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)
