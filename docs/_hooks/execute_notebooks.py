"""Execute the tutorials into ``docs/_executed/`` so that the documentation site shows their outputs.

Each notebook runs at its full sizes (``--fast``: the tiny ones of ``GMMPYRO_FAST=1``) in a fresh
kernel of this interpreter, in its own temporary working directory; its executed copy records the
run (see ``notebook_cache.py``). A notebook whose copy is current is skipped, unless ``--force``;
a copy made with tiny sizes does not count for a full-size run. A cell error fails the notebook
with the cell's traceback and leaves no copy of it. ``scripts/docs.sh`` runs this, then MkDocs.

Example:
    python docs/_hooks/execute_notebooks.py --fast tutorials/01_quickstart.ipynb
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path

import nbclient
import nbformat
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from notebook_cache import CACHE_DIR, METADATA_KEY, cells_sha256, duration, is_current, run_record

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "gmmpyro-docs"


class NotebookError(RuntimeError):
    """A cell of a notebook raised; the message names the notebook and holds the cell's traceback."""


def is_fast(env: Mapping[str, str]) -> bool:
    """Whether ``GMMPYRO_FAST`` in ``env`` asks for tiny sizes, by the tutorials' own rule (set, not 0).

    Example:
        >>> is_fast({"GMMPYRO_FAST": "1"}), is_fast({"GMMPYRO_FAST": "0"}), is_fast({})
        (True, False, False)
    """
    return env.get("GMMPYRO_FAST", "") not in ("", "0")


@contextlib.contextmanager
def interpreter_kernel() -> Iterator[str]:
    """The name of a temporary kernel spec for this interpreter, first on ``JUPYTER_PATH`` meanwhile.

    Whatever ``python3`` kernels the machine has registered, the notebooks then import the
    gmmpyro of this environment.
    """
    from ipykernel.kernelspec import install

    saved = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory(prefix="gmmpyro-kernel-") as prefix:
        install(kernel_name=KERNEL, display_name="gmmpyro docs", prefix=prefix)
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            [str(Path(prefix, "share", "jupyter")), *filter(None, (saved or "").split(os.pathsep))]
        )
        try:
            yield KERNEL
        finally:
            if saved is None:
                del os.environ["JUPYTER_PATH"]
            else:
                os.environ["JUPYTER_PATH"] = saved


def kernel_env(fast: bool) -> dict[str, str]:
    """The kernel's environment: this one, with ``GMMPYRO_FAST`` as asked and no ``MPLBACKEND``.

    An inherited ``MPLBACKEND`` (``Agg`` in the tests) would replace the inline backend, and the
    figures would never reach the outputs. Without ipywidgets, ``tqdm.auto`` falls back to text
    progress bars with a warning that would open every page; that one warning is silenced.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "GMMPYRO_FAST")}
    if fast:
        env["GMMPYRO_FAST"] = "1"
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), "ignore:IProgress not found"]))
    return env


def execute_notebook(
    source: Path, cache_dir: Path, *, kernel: str, fast: bool, timeout: float | None = None
) -> dict:
    """Run ``source`` and write it with its outputs to ``cache_dir / source.name``; returns its run record.

    Raises:
        NotebookError: a cell raised; any copy of ``source`` in ``cache_dir`` is removed.
    """
    target = cache_dir / source.name
    nb = nbformat.read(source, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name=kernel, allow_errors=False)
    with tempfile.TemporaryDirectory(prefix=f"{source.stem}-") as workdir:
        start = time.perf_counter()
        try:
            client.execute(cwd=workdir, env=kernel_env(fast))
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
            target.unlink(missing_ok=True)
            raise NotebookError(f"{source.name}: a cell failed\n{err}") from err
        wall_time = time.perf_counter() - start
    record = {
        "source_sha256": cells_sha256(nb),
        "executed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time, 1),
        "fast": fast,
    }
    nb.metadata[METADATA_KEY] = record
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    nbformat.write(nb, partial)
    partial.replace(target)
    return record


def needs_run(source: Path, cache_dir: Path, *, fast: bool) -> bool:
    """Whether ``source`` lacks a current executed copy (of full sizes, unless ``fast``)."""
    target = cache_dir / source.name
    if not target.is_file():
        return True
    executed = nbformat.read(target, as_version=4)
    if not is_current(executed, nbformat.read(source, as_version=4)):
        return True
    return run_record(executed)["fast"] and not fast


def main(argv: list[str] | None = None) -> int:
    """Execute the notebooks named in ``argv`` (default: every tutorial); 1 when one failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: tutorials/*.ipynb")
    parser.add_argument("--fast", action="store_true", help="tiny sizes (GMMPYRO_FAST=1): numbers meaningless")
    parser.add_argument("--force", action="store_true", help="execute even the notebooks whose copy is current")
    parser.add_argument("--cache", type=Path, default=ROOT / CACHE_DIR, help="default: %(default)s")
    parser.add_argument("--timeout", type=float, help="seconds a cell may run (default: no limit)")
    args = parser.parse_args(argv)
    fast = args.fast or is_fast(os.environ)
    sizes = "tiny sizes" if fast else "full sizes"
    failed = []
    with interpreter_kernel() as kernel:
        for source in args.notebooks or sorted((ROOT / "tutorials").glob("*.ipynb")):
            if not args.force and not needs_run(source, args.cache, fast=fast):
                print(f"{source.name}: executed copy is current, skipped", flush=True)
                continue
            print(f"{source.name}: executing with {sizes}", flush=True)
            try:
                record = execute_notebook(source, args.cache, kernel=kernel, fast=fast, timeout=args.timeout)
            except NotebookError as err:
                print(err, file=sys.stderr, flush=True)
                failed.append(source.name)
                continue
            print(f"{source.name}: executed in {duration(record['wall_time_s'])} with {sizes}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)} (no executed copy written)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
