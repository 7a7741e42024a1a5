"""MkDocs hook: render ``tutorials/*.ipynb`` as pages ``tutorials/<name>.md`` of the site.

The notebooks are stored without outputs, so a page shows the notebook's Markdown cells and
its code; the notebook itself is published next to the page for download. The conversion
reads the notebook JSON directly: no Jupyter or nbconvert needed, nothing is executed, and
the build stays fast and offline.
"""

from __future__ import annotations

import json
from pathlib import Path

from mkdocs.structure.files import File, Files

_REPO_DIR = "tutorials"
_SITE_DIR = "tutorials"


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def notebook_to_markdown(path: Path) -> str:
    """The notebook at ``path`` as a Markdown page: Markdown cells verbatim, code cells fenced."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    note = (
        f'!!! note "Run it yourself"\n'
        f"    This page is the notebook [`{_REPO_DIR}/{path.name}`]({path.name}) without its outputs. "
        f'Download it and run it with Jupyter (`pip install "gmmpyro[notebooks]"`); '
        f"with the environment variable `GMMPYRO_FAST=1` it runs in seconds on tiny sizes.\n"
    )
    for i, cell in enumerate(nb.get("cells", [])):
        text = _source(cell).rstrip()
        if not text:
            continue
        if cell.get("cell_type") == "markdown":
            parts.append(text)
        elif cell.get("cell_type") == "code":
            parts.append(f"```python\n{text}\n```")
        if i == 0:
            parts.append(note)
    return "\n\n".join(parts) + "\n"


def on_files(files: Files, config) -> Files:
    root = Path(config["config_file_path"]).parent / _REPO_DIR
    for path in sorted(root.glob("*.ipynb")):
        page = f"{_SITE_DIR}/{path.stem}.md"
        files.append(File.generated(config, page, content=notebook_to_markdown(path)))
        files.append(File.generated(config, f"{_SITE_DIR}/{path.name}", abs_src_path=str(path)))
    return files
