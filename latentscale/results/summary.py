"""The summary of a fit as an object: header facts, titled tables and notes, rendered as text
(``print(fit.summary())``, ``latentscale fit`` / ``show``) or HTML (the report)."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class SummaryTable:
    title: str
    frame: pd.DataFrame
    text: str  # the table as formatted text (statsmodels style for coefficient tables)
    digits: int = 3


@dataclass
class Summary:
    """A fit's summary: ``facts`` (label → value, in order), ``tables`` and ``notes``."""

    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[SummaryTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, title_start: str) -> pd.DataFrame:
        """The frame of the first table whose title starts with ``title_start``."""
        for t in self.tables:
            if t.title.startswith(title_start):
                return t.frame
        raise KeyError(title_start)

    def as_text(self) -> str:
        lines = [self.title]
        row: list[str] = []
        for label, value in self.facts:
            item = f"{label} {value}"
            if sum(len(x) + 3 for x in row) + len(item) > 110 and row:
                lines.append("   ".join(row))
                row = []
            row.append(item)
        if row:
            lines.append("   ".join(row))
        lines.append("")
        for note in self.notes:
            lines += [note, ""]
        for t in self.tables:
            lines += [t.title + ":", t.text, ""]
        return "\n".join(lines).rstrip() + "\n"

    def as_html(self) -> str:
        facts = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in self.facts)
        parts = [f"<table class='kv'>{facts}</table>"]
        parts += [f"<p class='note'>{html.escape(n)}</p>" for n in self.notes]
        for t in self.tables:
            parts.append(f"<h3>{html.escape(t.title)}</h3>" + frame_html(t.frame.reset_index(), "{:.%df}" % t.digits))
        return "".join(parts)

    def __str__(self) -> str:
        return self.as_text()

    def _repr_html_(self) -> str:  # notebooks
        return self.as_html()


def cell_html(v, floats: str = "{:.3g}") -> str:
    """One table cell: yes/no for booleans, ``floats`` for numbers (– when not finite)."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return "–" if not math.isfinite(v) else floats.format(v)
    return html.escape(str(v))


def frame_html(frame: pd.DataFrame, floats: str = "{:.3g}") -> str:
    """A frame as a plain HTML table (its columns; reset the index first to show it)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell_html(v, floats)}</td>" for v in r) + "</tr>"
                   for r in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
