"""The original notebook's code runs against fusionlab with only its imports, model name and hidden size changed,
and our own example runs end to end."""

import io
import re
import subprocess
import sys
from contextlib import redirect_stdout

import pytest

from fusionlab.base_model import default_model_path
from tests.conftest import REPO, SHARED

NOTEBOOK = SHARED / "reference" / "adapter_fusion_basics_notebook.txt"


def notebook_code() -> str:
    """The code cells of the notebook (each starts after an ``In [None]:`` line, ends at a markdown heading)."""
    cells, current, in_code = [], [], False
    for line in NOTEBOOK.read_text(encoding="utf-8").splitlines():
        if line.strip() == "In [None]:":
            in_code, current = True, []
            cells.append(current)
        elif in_code and re.match(r"^#{2,} ", line):
            in_code = False
        elif in_code:
            current.append(line)
    return "\n\n".join("\n".join(cell) for cell in cells)


def adapt(code: str) -> str:
    """Only the three allowed changes: import lines, model name, hidden size."""
    for module in ("config", "fusion", "adapters", "training"):  # every public name is exported by the package
        code = code.replace(f"from {module} import", "from fusionlab import")
    code = code.replace('"distilbert-base-uncased"', repr(str(default_model_path())))
    return code.replace("hidden_size = 2, 10, 768", "hidden_size = 2, 10, 384")


@pytest.mark.slow
@pytest.mark.skipif(not NOTEBOOK.exists(), reason="../shared/reference is not beside the repository")
def test_reference_notebook_runs_unchanged():
    code = adapt(notebook_code())
    assert code.count("from fusionlab import") >= 4 and "384" in code  # the substitutions happened
    namespace: dict = {"__name__": "__notebook__"}
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(code, str(NOTEBOOK), "exec"), namespace)
    printed = out.getvalue()
    assert "Fused output shape: torch.Size([2, 10, 384])" in printed
    assert "Weight sum: 1.000" in printed
    assert "Selected adapter outputs: ['sentiment', 'nli']" in printed
    assert printed.count("Prediction (fused):") == 3
    stats = namespace["efficiency_stats"]
    assert stats["base_params"] == 22_713_216 and stats["adapter_params"] > 0 and stats["fusion_params"] > 0
    assert stats["reduction_factor"] > 1


@pytest.mark.slow
def test_example_runs_offline():
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "fusion_basics.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for heading in ("1. fusion mechanisms", "4. single adapter vs fusion", "6. fusion methods compared"):
        assert heading in done.stdout
    assert "sentiment only: negative" in done.stdout
