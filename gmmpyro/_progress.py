"""Progress bars that respect both a ``progress`` switch and tqdm's own ``TQDM_*`` environment settings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable | None = None, *, progress: bool, **kwargs: Any) -> tqdm:
    """A ``tqdm.auto`` bar, off when ``progress`` is false.

    With ``progress=True`` the ``disable`` argument is left to tqdm, so ``TQDM_DISABLE=1`` in the
    environment still silences every bar (passing ``disable=False`` would override it).

    Example:
        >>> bar = progress_bar(range(3), progress=False, desc="steps")
        >>> bar.disable, sum(bar)
        (True, 3)
    """
    if not progress:
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
