"""The read-only base of every gmmpyro result: fits, scans, validation numbers, reports.

A result is a frozen dataclass. Array fields listed in ``_arrays`` become read-only NumPy
arrays; :meth:`Result.to_dict` gives plain, JSON-serialisable Python; ``repr`` and the
notebook's HTML view are drawn from one :class:`Table` that each result describes in
``_table()``.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass

import numpy as np
import torch

__all__ = ["Result", "Table", "plain", "readonly"]


def plain(value):
    """``value`` as plain Python: arrays → nested lists, results → dicts, paths → strings, NaN/inf stay floats.

    Example:
        >>> plain({"a": np.arange(2), "b": (np.float64(0.5),)})
        {'a': [0, 1], 'b': [0.5]}
    """
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def readonly(value) -> np.ndarray:
    """A NumPy copy of ``value`` that cannot be written to.

    Example:
        >>> readonly([1.0, 2.0]).flags.writeable
        False
    """
    a = np.array(value)
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class Table:
    """What a result shows: a title line and rows of text cells, optionally with a header.

    Arguments:
        title: the first line (``repr``) or the table caption (HTML).
        rows: rows of cells; rows may differ in length.
        header: column names, or ``None``.
        ok: colours the HTML caption green (``True``) or red (``False``); ``None`` leaves it plain.
        align: one letter per column, ``"l"`` (left, the default for columns not named) or
            ``"r"`` (right, for numbers).

    Example:
        >>> print(Table("fit", [("cx", "0.5"), ("cy", "-0.1")], align="lr").text())
        fit
          cx   0.5
          cy  -0.1
    """

    title: str
    rows: Sequence[Sequence[str]]
    header: Sequence[str] | None = None
    ok: bool | None = None
    align: str = ""

    def _right(self, i: int) -> bool:
        return self.align[i : i + 1] == "r"

    def text(self) -> str:
        """Aligned plain text: the title, then one indented line per row."""
        lines = [list(self.header)] if self.header else []
        lines += [list(r) for r in self.rows]
        n = max((len(r) for r in lines), default=0)
        widths = [max((len(r[i]) for r in lines if i < len(r)), default=0) for i in range(n)]
        out = [self.title]
        for row in lines:
            cells = [c.rjust(widths[i]) if self._right(i) else c.ljust(widths[i]) for i, c in enumerate(row)]
            out.append(("  " + "  ".join(cells)).rstrip())
        return "\n".join(out)

    def html(self) -> str:
        """An HTML table for notebooks."""
        n = max([len(r) for r in self.rows] + [len(self.header or ())] + [1])
        colour = {True: " style='background:#c2f0c2'", False: " style='background:#ff9999'"}.get(self.ok, "")
        head = f"<tr><th colspan='{n}'{colour}>{html.escape(self.title)}</th></tr>"
        if self.header:
            head += "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in self.header) + "</tr>"
        right = " style='text-align:right'"
        body = "".join(
            "<tr>" + "".join(f"<td{right if self._right(i) else ''}>{html.escape(c)}</td>" for i, c in enumerate(r))
            + "</tr>"
            for r in self.rows
        )
        return f"<table>{head}{body}</table>"


class Result:
    """Base of the frozen result dataclasses: read-only arrays, ``to_dict``, ``repr``, HTML repr.

    Subclasses are ``@dataclass(frozen=True, repr=False)``, list their array fields in
    ``_arrays`` and describe themselves in ``_table()``. Those with headline numbers
    implement ``summary()`` (a flat dict), which :meth:`to_dict` adds under ``"summary"``.

    Example:
        >>> @dataclass(frozen=True, repr=False)
        ... class Mean(Result):
        ...     _arrays = ("values",)
        ...     values: np.ndarray
        ...     def _table(self) -> Table:
        ...         return Table("Mean", [("mean", f"{self.values.mean():.3g}")])
        >>> Mean([1.0, 2.0])
        Mean
          mean  1.5
        >>> Mean([1.0, 2.0]).to_dict()
        {'values': [1.0, 2.0]}
    """

    _arrays: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in self._arrays:
            object.__setattr__(self, name, readonly(getattr(self, name)))

    def to_dict(self) -> dict:
        """Every field as plain, JSON-serialisable Python (NaN and inf stay floats)."""
        if not is_dataclass(self):  # pragma: no cover - a programming error in a subclass
            raise TypeError(f"{type(self).__name__} must be a dataclass to use Result.to_dict")
        out = {f.name: plain(getattr(self, f.name)) for f in fields(self)}
        summary = getattr(self, "summary", None)
        if callable(summary):
            out["summary"] = plain(summary())
        return out

    def _table(self) -> Table:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def __repr__(self) -> str:
        return self._table().text()

    def _repr_html_(self) -> str:
        return self._table().html()
