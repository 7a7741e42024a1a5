"""The tutorials' outputs on the documentation site: executed copies, their rendering, their execution.

``docs/_hooks/execute_notebooks.py`` runs notebooks into a folder of executed copies, each
recording the hash of its source's cells; the MkDocs hook ``docs/_hooks/notebooks.py`` renders a
current copy's outputs and falls back to the code alone for a missing or stale one. Small
notebooks built here stand in for the tutorials. MkDocs loads the hook from a configuration in
``tmp_path``; the other two modules are imported as the hook imports them, with ``docs/_hooks``
first on ``sys.path``.
"""

from __future__ import annotations

import copy
import importlib
import io
import logging
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat: pip install 'gmmpyro[test]'")
pytest.importorskip("mkdocs", reason="the hook needs mkdocs: pip install 'gmmpyro[docs]'")

from matplotlib.figure import Figure  # noqa: E402
from mkdocs.config.defaults import MkDocsConfig  # noqa: E402
from mkdocs.structure.files import Files  # noqa: E402
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output  # noqa: E402

HOOKS = Path(__file__).resolve().parents[1] / "docs" / "_hooks"
LOGGER = "mkdocs.hooks.notebooks"


@pytest.fixture
def cache(monkeypatch):
    """The ``notebook_cache`` module: hash and metadata of executed copies."""
    monkeypatch.syspath_prepend(str(HOOKS))
    return importlib.import_module("notebook_cache")


@pytest.fixture
def execute(monkeypatch):
    """The ``execute_notebooks`` module, with ``GMMPYRO_FAST`` unset (full sizes unless ``--fast``)."""
    pytest.importorskip("nbclient", reason="executing notebooks needs nbclient: pip install 'gmmpyro[test]'")
    pytest.importorskip("ipykernel", reason="no Jupyter kernel to execute notebooks: pip install ipykernel")
    monkeypatch.syspath_prepend(str(HOOKS))
    monkeypatch.delenv("GMMPYRO_FAST", raising=False)
    return importlib.import_module("execute_notebooks")


def _png() -> bytes:
    buf = io.BytesIO()
    Figure(figsize=(0.2, 0.2)).savefig(buf, format="png")
    return buf.getvalue()


def _source() -> nbformat.NotebookNode:
    return new_notebook(
        cells=[
            new_markdown_cell("# Demo"),
            new_code_cell("print('hi')\nfit()"),
            new_code_cell("fig"),
            new_code_cell("table"),
            new_code_cell("6 * 7"),
            new_code_cell("bar"),
        ]
    )


def _executed(source, cache, png: bytes, *, fast: bool = False) -> nbformat.NotebookNode:
    """``source`` with one output of each kind, as the execution would record it."""
    import base64

    nb = copy.deepcopy(source)
    outputs = {
        1: [
            new_output("stream", name="stdout", text="hi\n"),
            new_output("stream", name="stderr", text="fit:   0%|   |\r"),
            new_output("stream", name="stderr", text="fit:  50%|#  |\rfit: 100%|###|\n"),
        ],
        2: [
            new_output(
                "display_data",
                data={"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure size 20x20 with 0 Axes>"},
            )
        ],
        3: [
            new_output(
                "execute_result",
                data={"text/html": "<table><tr><td>7</td></tr></table>", "text/plain": "table as text"},
                execution_count=3,
            )
        ],
        4: [new_output("execute_result", data={"text/plain": "42"}, execution_count=4)],
        5: [
            new_output(
                "display_data",
                data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "HBox()"},
            )
        ],
    }
    for i, cell_outputs in outputs.items():
        nb.cells[i].outputs = cell_outputs
    nb.metadata[cache.METADATA_KEY] = {
        "source_sha256": cache.cells_sha256(source),
        "executed_at": "2025-01-02T03:04:05+00:00",
        "wall_time_s": 192.4,
        "fast": fast,
    }
    return nb


def _site(tmp_path: Path, source, executed=None) -> MkDocsConfig:
    """A project in ``tmp_path`` with ``tutorials/demo.ipynb`` and, if given, its executed copy."""
    (tmp_path / "tutorials").mkdir()
    (tmp_path / "docs" / "_executed").mkdir(parents=True)
    nbformat.write(source, tmp_path / "tutorials" / "demo.ipynb")
    if executed is not None:
        nbformat.write(executed, tmp_path / "docs" / "_executed" / "demo.ipynb")
    config = MkDocsConfig(config_file_path=str(tmp_path / "mkdocs.yml"))
    config.load_dict(
        {
            "site_name": "test",
            "docs_dir": str(tmp_path / "docs"),
            "site_dir": str(tmp_path / "site"),
            "hooks": [str(HOOKS / "notebooks.py")],
        }
    )
    errors, _ = config.validate()
    assert not errors, errors
    return config


def _files(config: MkDocsConfig) -> Files:
    """The site's files after the hook's ``on_files``, run by MkDocs."""
    return config.plugins.on_files(Files([]), config=config)


def _page(files: Files) -> str:
    return files.get_file_from_path("tutorials/demo.md").content_string


def test_hash_sees_cell_types_and_sources_only(cache):
    source = _source()
    executed = copy.deepcopy(source)
    executed.cells[4].outputs = [new_output("execute_result", data={"text/plain": "42"}, execution_count=1)]
    executed.cells[4].metadata["tags"] = ["x"]
    executed.metadata["kernelspec"] = {"name": "other"}
    assert cache.cells_sha256(executed) == cache.cells_sha256(source)
    edited = copy.deepcopy(source)
    edited.cells[4].source = "6 * 8"
    assert cache.cells_sha256(edited) != cache.cells_sha256(source)
    retyped = copy.deepcopy(source)
    retyped.cells[4] = new_markdown_cell("6 * 7")
    assert cache.cells_sha256(retyped) != cache.cells_sha256(source)


def test_current_copy_renders_its_outputs(tmp_path, cache, caplog):
    png = _png()
    source = _source()
    config = _site(tmp_path, source, _executed(source, cache, png))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        files = _files(config)
    page = _page(files)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert "```python\nprint('hi')\nfit()\n```\n\n```text\nhi\n```" in page
    assert "```text\nfit: 100%|###|\n```" in page and "  0%" not in page and " 50%" not in page  # final state
    assert "![output](demo/output_2_0.png)" in page and "<Figure" not in page
    assert files.get_file_from_path("tutorials/demo/output_2_0.png").content_bytes == png
    assert '<div class="notebook-output"' in page and "<table><tr><td>7</td></tr></table>" in page
    assert "table as text" not in page
    assert "```python\n6 * 7\n```\n\n```text\n42\n```" in page
    assert "HBox" not in page  # widgets are left out
    assert "with the outputs of one run: executed on 2025-01-02 in 3 min 12 s, with its full sizes" in page
    assert files.get_file_from_path("tutorials/demo.ipynb") is not None  # still published for download


def test_fast_copy_says_its_numbers_are_meaningless(tmp_path, cache):
    source = _source()
    page = _page(_files(_site(tmp_path, source, _executed(source, cache, _png(), fast=True))))
    assert "with tiny sizes (`GMMPYRO_FAST=1`): its numbers and figures are meaningless" in page
    assert "```text\n42\n```" in page


def test_stale_copy_is_ignored_with_a_warning(tmp_path, cache, caplog):
    old = _source()
    source = copy.deepcopy(old)
    source.cells[4].source = "6 * 8"
    config = _site(tmp_path, source, _executed(old, cache, _png()))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        files = _files(config)
    page = _page(files)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tutorials/demo.ipynb" in warnings[0] and "scripts/docs.sh" in warnings[0]
    assert "```python\n6 * 8\n```" in page and "without its outputs" in page
    assert "```text" not in page and files.get_file_from_path("tutorials/demo/output_2_0.png") is None


def test_missing_copy_is_no_warning(tmp_path, caplog):
    """Without executed copies (a fresh checkout) ``mkdocs build --strict`` must still pass."""
    with caplog.at_level(logging.INFO, logger=LOGGER):
        page = _page(_files(_site(tmp_path, _source())))
    assert [r.levelno for r in caplog.records] == [logging.INFO] and "demo.ipynb" in caplog.records[0].getMessage()
    assert "without its outputs" in page and "```text" not in page


def test_needs_run(tmp_path, execute, cache):
    source = _source()
    nbformat.write(source, tmp_path / "demo.ipynb")
    out = tmp_path / "cache"
    out.mkdir()
    assert execute.needs_run(tmp_path / "demo.ipynb", out, fast=True)  # no copy
    nbformat.write(_executed(source, cache, _png(), fast=True), out / "demo.ipynb")
    assert not execute.needs_run(tmp_path / "demo.ipynb", out, fast=True)
    assert execute.needs_run(tmp_path / "demo.ipynb", out, fast=False)  # tiny sizes do not count for a full run
    nbformat.write(_executed(source, cache, _png(), fast=False), out / "demo.ipynb")
    assert not execute.needs_run(tmp_path / "demo.ipynb", out, fast=True)
    source.cells[1].source = "print('hello')"
    nbformat.write(source, tmp_path / "demo.ipynb")
    assert execute.needs_run(tmp_path / "demo.ipynb", out, fast=False)  # stale


def test_execution_writes_a_current_copy_with_outputs(tmp_path, execute, cache, capsys, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # an inherited backend must not keep the figures from the outputs
    source = tmp_path / "two.ipynb"
    nbformat.write(
        new_notebook(
            cells=[
                new_code_cell("print('hi')"),
                new_code_cell("6 * 7"),
                new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1]);"),
                new_code_cell("from tqdm.auto import tqdm"),  # no "IProgress not found" warning
            ]
        ),
        source,
    )
    out = tmp_path / "cache"
    assert execute.main([str(source), "--cache", str(out), "--timeout", "120"]) == 0
    assert "two.ipynb: executed in" in capsys.readouterr().out
    executed = nbformat.read(out / "two.ipynb", as_version=4)
    record = executed.metadata[cache.METADATA_KEY]
    assert record["source_sha256"] == cache.cells_sha256(nbformat.read(source, as_version=4))
    assert record["fast"] is False and record["wall_time_s"] > 0 and record["executed_at"].startswith("20")
    printed, value, figure, quiet = (cell.outputs for cell in executed.cells)
    assert [(o.output_type, o.name, o.text) for o in printed] == [("stream", "stdout", "hi\n")]
    assert [(o.output_type, o.data["text/plain"]) for o in value] == [("execute_result", "42")]
    assert [o.output_type for o in figure] == ["display_data"] and "image/png" in figure[0].data
    assert quiet == []

    written = (out / "two.ipynb").stat().st_mtime_ns
    assert execute.main([str(source), "--cache", str(out), "--fast"]) == 0  # a full-size copy serves a fast run
    assert "two.ipynb: executed copy is current, skipped" in capsys.readouterr().out
    assert (out / "two.ipynb").stat().st_mtime_ns == written


def test_cell_error_fails_naming_the_notebook_and_leaves_no_copy(tmp_path, execute, capsys):
    source = tmp_path / "bad.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("raise ValueError('boom')")]), source)
    out = tmp_path / "cache"
    out.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell("x = 0")]), out / "bad.ipynb")  # an older run
    assert execute.main([str(source), "--cache", str(out), "--timeout", "120"]) == 1
    err = capsys.readouterr().err
    assert "bad.ipynb: a cell failed" in err and "ValueError" in err and "boom" in err
    assert "failed: bad.ipynb" in err
    assert list(out.iterdir()) == []
