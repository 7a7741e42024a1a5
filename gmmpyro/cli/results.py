"""The results table of ``gmmpyro demo`` and ``gmmpyro infer``: one row per parameter.

Columns: the truth (when known), the MLE with its profile-likelihood 68 % and 95 % intervals
(from a scan), the posterior mean with its 68 % and 95 % highest-density intervals, R-hat
and the bulk effective sample size (from ArviZ). Written as Markdown (``summary.md``) and
as aligned plain text for the terminal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["markdown_table", "result_rows", "text_table"]

_HEADERS = {
    "parameter": "parameter",
    "truth": "truth",
    "mle": "MLE",
    "profile68": "profile 68 %",
    "profile95": "profile 95 %",
    "mean": "posterior mean",
    "hdi68": "HDI 68 %",
    "hdi95": "HDI 95 %",
    "r_hat": "R-hat",
    "ess_bulk": "bulk ESS",
}


def result_rows(names: Sequence[str], *, scan=None, idata=None, truth: Mapping[str, float] | None = None) -> list[dict]:
    """The numbers of the table, one dictionary per parameter (JSON-ready).

    Arguments:
        names: the parameters, in the table's order.
        scan: a :class:`~gmmpyro.inference.profile.ProfileScan`; its scanned parameters get
            intervals, its profiled ones ``"profiled"``, parameters it holds fixed ``"fixed"``.
        idata: ArviZ data with a ``posterior`` group holding the parameters by name.
        truth: the true values, if known.

    Returns:
        Per parameter: ``parameter`` and, where available, ``truth``, ``mle``,
        ``profile68``/``profile95`` (``[lo, hi]`` or the word ``"profiled"``/``"fixed"``),
        ``mean``, ``sd``, ``hdi68``, ``hdi95``, ``r_hat``, ``ess_bulk``.

    Example:
        >>> rows = result_rows(["cx"], truth={"cx": 0.8})
        >>> rows
        [{'parameter': 'cx', 'truth': 0.8}]
    """
    rows = []
    diagnostics = _diagnostics(idata, names) if idata is not None else None
    for name in names:
        row: dict = {"parameter": name}
        if truth is not None and name in truth:
            row["truth"] = float(truth[name])
        if scan is not None:
            row["mle"] = float(scan.mle.values[name])
            row.update(_profile_columns(scan, name))
        if idata is not None and name in diagnostics:
            row.update(diagnostics[name])
        rows.append(row)
    return rows


def _profile_columns(scan, name: str) -> dict:
    if name in scan.params:
        return {f"profile{int(cl * 100)}": [float(v) for v in scan.interval(name, cl)] for cl in (0.68, 0.95)}
    word = "profiled" if name in scan.profiled else "fixed" if name in scan.fixed else "at the MLE"
    return {"profile68": word, "profile95": word}


def _diagnostics(idata, names: Sequence[str]) -> dict[str, dict]:
    import arviz as az

    have = [n for n in names if n in idata.posterior]
    table = az.summary(idata, var_names=have, kind="diagnostics")
    out = {}
    for name in have:
        draws = np.asarray(idata.posterior[name]).reshape(-1)
        out[name] = {
            "mean": float(draws.mean()),
            "sd": float(draws.std()),
            # the probability passed by position: ``hdi_prob`` in ArviZ 0.x, ``prob`` in 1.x
            "hdi68": [float(v) for v in az.hdi(draws, 0.68)],
            "hdi95": [float(v) for v in az.hdi(draws, 0.95)],
            "r_hat": float(table.loc[name, "r_hat"]),
            "ess_bulk": float(table.loc[name, "ess_bulk"]),
        }
    return out


def _cells(rows: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of the columns that at least one row fills."""
    keys = [k for k in _HEADERS if any(k in row for row in rows)]

    def cell(row: dict, key: str) -> str:
        value = row.get(key)
        if value is None:
            return ""
        if key == "parameter" or isinstance(value, str):
            return str(value)
        if isinstance(value, list):
            return "[" + ", ".join("open" if math.isnan(v) else f"{v:+.3f}" for v in value) + "]"
        if key == "r_hat":
            return f"{value:.3f}"
        if key == "ess_bulk":
            return f"{value:.0f}"
        return f"{value:+.3f}"

    return [_HEADERS[k] for k in keys], [[cell(row, k) for k in keys] for row in rows]


def markdown_table(rows: Sequence[dict]) -> str:
    """The rows as a Markdown table.

    Example:
        >>> print(markdown_table([{"parameter": "cx", "truth": 0.8, "mle": 0.83}]))
        | parameter | truth | MLE |
        |---|---|---|
        | cx | +0.800 | +0.830 |
    """
    headers, cells = _cells(rows)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(line) + " |" for line in cells]
    return "\n".join(lines)


def text_table(rows: Sequence[dict]) -> str:
    """The rows as aligned plain text, for a terminal.

    Example:
        >>> print(text_table([{"parameter": "cx", "truth": 0.8, "mle": 0.83}]))
        parameter   truth     MLE
        cx         +0.800  +0.830
    """
    headers, cells = _cells(rows)
    widths = [max(len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        return "  ".join([first, *(v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True))]).rstrip()

    return "\n".join([line(headers), *(line(values) for values in cells)])
