"""Build the documentation site in strict mode: a broken link, cross-reference or docstring fails.

``mkdocs build --strict`` turns every warning into an error: links between pages, the
``[name][gmmpyro.path]`` cross-references of the pages and of the docstrings (see
``docs/_hooks/rst_roles.py``), ``::: module`` directives naming objects that no longer exist,
pages missing from the navigation (``validation:`` in ``mkdocs.yml``) and griffe's docstring
warnings. The tutorials are rendered from their notebooks without
running them, so the build takes seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mkdocs_available() -> bool:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocstrings_handlers.python  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(
    not _mkdocs_available(),
    reason="mkdocs-material and mkdocstrings are not installed: pip install 'gmmpyro[docs]'",
)
def test_docs_build_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    for page in ["index.html", "concepts/index.html", "faq/index.html", "api/model/index.html"]:
        assert (site / page).is_file(), f"{page} missing from the built site"
    cli_page = (site / "cli" / "index.html").read_text(encoding="utf-8")
    for command in ("demo", "train", "sample", "infer", "report"):  # filled in from the parser's --help
        assert f"usage: gmmpyro {command}" in cli_page, f"the help of gmmpyro {command} is missing from cli.md"
    for notebook in sorted((ROOT / "tutorials").glob("*.ipynb")):
        assert (site / "tutorials" / notebook.stem / "index.html").is_file(), f"{notebook.name} not rendered"
        assert (site / "tutorials" / notebook.name).is_file(), f"{notebook.name} not published for download"
