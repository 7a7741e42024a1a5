"""Progress bars: the ``progress`` switch and tqdm's environment settings both turn them off."""

import os
import subprocess
import sys

from gmmpyro._progress import progress_bar


def test_progress_switch():
    off = progress_bar(range(2), progress=False)
    assert off.disable is True
    off.close()
    if "TQDM_DISABLE" not in os.environ:
        on = progress_bar(range(2), progress=True)
        assert on.disable is False
        on.close()


def test_tqdm_disable_environment_wins_over_progress_true():
    # tqdm reads TQDM_* when it is imported, hence a fresh interpreter.
    code = "from gmmpyro._progress import progress_bar; print(progress_bar(range(2), progress=True).disable)"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
