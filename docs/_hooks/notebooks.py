"""MkDocs hook: render ``tutorials/*.ipynb`` as pages ``tutorials/<name>.md`` of the site.

The notebooks are stored without outputs. ``scripts/docs.sh`` executes them into
``docs/_executed/`` (git-ignored; see ``execute_notebooks.py``) and then builds the site: a page
shows the Markdown cells, the code and, from a current executed copy, the outputs — text,
tables (HTML), figures (PNG or SVG files next to the page); widgets are left out. A note on the
page gives the run's date, wall time and sizes. Without an executed copy a page shows the code
only (logged at INFO: a plain ``mkdocs build`` stays fast and offline); with a stale one, whose
notebook was edited after the run, likewise but with a warning, so ``--strict`` refuses to
publish pages that silently lost their outputs. The notebook itself is published next to its
page for download.

The conversion reads the notebook JSON directly: no Jupyter or nbconvert needed at build time.

Example:
    scripts/docs.sh --fast          # execute with tiny sizes, then mkdocs build
    mkdocs serve                    # pages from whatever docs/_executed/ holds
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from notebook_cache import CACHE_DIR, cell_text, duration, is_current, read_notebook, run_record

log = logging.getLogger("mkdocs.hooks.notebooks")

_REPO_DIR = "tutorials"
_SITE_DIR = "tutorials"
_EXECUTE = "scripts/docs.sh"
_WIDGET = "application/vnd.jupyter.widget-view+json"
_IMAGES = {"image/png": "png", "image/svg+xml": "svg"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _join(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def _fenced(text: str, lang: str) -> str:
    """``text`` in a fenced block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def clean_stream(text: str) -> str:
    """Stream text as a notebook shows it: colour codes dropped, each ``\\r``-updated line at its last state.

    Progress bars (tqdm) redraw one line with carriage returns; only their final state is kept.

    Example:
        >>> clean_stream("fit:  10%|#  |\\rfit: 100%|###|\\n\\x1b[31mdone\\x1b[0m\\n")
        'fit: 100%|###|\\ndone'
    """
    lines = []
    for line in _ANSI.sub("", text).split("\n"):
        if "\r" in line:
            line = next((part for part in reversed(line.split("\r")) if part.strip()), "")
            if not line:
                continue
        lines.append(line)
    return "\n".join(lines).strip("\n")


def _merged(outputs: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """The outputs with consecutive stream outputs of one name joined (a progress bar spans many)."""
    pending: dict[str, Any] | None = None
    for output in outputs:
        if output.get("output_type") == "stream":
            if pending is not None and pending["name"] == output.get("name"):
                pending["text"] += _join(output.get("text", ""))
                continue
            if pending is not None:
                yield pending
            pending = {"output_type": "stream", "name": output.get("name"), "text": _join(output.get("text", ""))}
            continue
        if pending is not None:
            yield pending
            pending = None
        yield output
    if pending is not None:
        yield pending


def render_output(output: Mapping[str, Any], image_stem: str) -> tuple[str, tuple[str, bytes] | None]:
    """Markdown for one output, and the image file it refers to as ``(path from the page, bytes)``, if any.

    ``image_stem`` names that file without its extension (``<notebook stem>/output_<cell>_<k>``).
    Rich outputs are taken by preference: PNG, SVG, HTML, Markdown, plain text.
    """
    kind = output.get("output_type")
    if kind == "stream":
        text = clean_stream(_join(output.get("text", "")))
        return (_fenced(text, "text") if text else ""), None
    if kind == "error":
        trace = _ANSI.sub("", "\n".join(output.get("traceback", [])))
        return _fenced(trace or f"{output.get('ename')}: {output.get('evalue')}", "text"), None
    data = output.get("data", {})
    if _WIDGET in data:
        return "", None
    for mime, ext in _IMAGES.items():
        if mime in data:
            content = _join(data[mime])
            raw = content.encode("utf-8") if ext == "svg" else base64.b64decode(content)
            path = f"{image_stem}.{ext}"
            return f"![output]({path})", (path, raw)
    if "text/html" in data:
        html = _join(data["text/html"]).strip()
        return f'<div class="notebook-output" style="overflow-x: auto">\n{html}\n</div>', None
    if "text/markdown" in data:
        return _join(data["text/markdown"]).strip(), None
    if "text/plain" in data:
        return _fenced(_ANSI.sub("", _join(data["text/plain"])).rstrip(), "text"), None
    return "", None


def _note(path: Path, record: Mapping[str, Any] | None) -> str:
    link = f"[`{_REPO_DIR}/{path.name}`]({path.name})"
    if record is None:
        shown = f"This page is the notebook {link} without its outputs."
    else:
        sizes = (
            "with tiny sizes (`GMMPYRO_FAST=1`): its numbers and figures are meaningless"
            if record.get("fast")
            else "with its full sizes"
        )
        shown = (
            f"This page is the notebook {link} with the outputs of one run: executed on "
            f"{str(record.get('executed_at', '?'))[:10]} in {duration(record.get('wall_time_s', 0.0))}, {sizes}."
        )
    return (
        f'!!! note "Run it yourself"\n'
        f"    {shown} Download it and run it with Jupyter (`pip install \"gmmpyro[notebooks]\"`); "
        f"with the environment variable `GMMPYRO_FAST=1` it runs in seconds on tiny sizes.\n"
    )


def notebook_to_markdown(path: Path, executed: Mapping[str, Any] | None = None) -> tuple[str, dict[str, bytes]]:
    """The notebook at ``path`` as a Markdown page, and the image files its outputs need.

    Markdown cells go in verbatim and code cells fenced. With ``executed`` (a current executed
    copy of the notebook, as JSON) each code cell is followed by its outputs; the images are
    returned as ``{path relative to the page's folder: bytes}``.
    """
    nb = executed if executed is not None else read_notebook(path)
    parts = []
    images: dict[str, bytes] = {}
    for i, cell in enumerate(nb.get("cells", [])):
        text = cell_text(cell).rstrip()
        if cell.get("cell_type") == "markdown" and text:
            parts.append(text)
        elif cell.get("cell_type") == "code" and text:
            parts.append(_fenced(text, "python"))
            if executed is not None:
                for k, output in enumerate(_merged(cell.get("outputs", []))):
                    markdown, image = render_output(output, f"{path.stem}/output_{i}_{k}")
                    if markdown:
                        parts.append(markdown)
                    if image is not None:
                        images[image[0]] = image[1]
        if i == 0:
            parts.append(_note(path, None if executed is None else run_record(executed)))
    return "\n\n".join(parts) + "\n", images


def _current_copy(path: Path, cache: Path) -> dict[str, Any] | None:
    """The executed copy of the notebook ``path`` in ``cache`` if it is current; logs why not otherwise."""
    copy = cache / path.name
    if not copy.is_file():
        log.info(f"{_REPO_DIR}/{path.name}: no executed copy, the page shows no outputs (run {_EXECUTE})")
        return None
    executed = read_notebook(copy)
    if not is_current(executed, read_notebook(path)):
        log.warning(
            f"{_REPO_DIR}/{path.name} changed since its executed copy {copy.name} was made: the page shows "
            f"no outputs; run {_EXECUTE} to execute it again"
        )
        return None
    return executed


def on_files(files: Files, config) -> Files:
    root = Path(config["config_file_path"]).parent
    for path in sorted((root / _REPO_DIR).glob("*.ipynb")):
        page, images = notebook_to_markdown(path, _current_copy(path, root / CACHE_DIR))
        files.append(File.generated(config, f"{_SITE_DIR}/{path.stem}.md", content=page))
        files.append(File.generated(config, f"{_SITE_DIR}/{path.name}", abs_src_path=str(path)))
        for image, content in images.items():
            files.append(File.generated(config, f"{_SITE_DIR}/{image}", content=content))
    return files
