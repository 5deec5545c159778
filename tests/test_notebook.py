from pathlib import Path

import nbformat
import pytest
import torch
from click.testing import CliRunner
from nbclient import NotebookClient

from instseg.checkpoints import save_native
from instseg.cli import main
from instseg.generator import Generator, GeneratorConfig

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "inspect.ipynb"


@pytest.mark.slow
def test_inspect_notebook_executes_on_a_tiny_run(tmp_path, monkeypatch):
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=32, z_dim=16, w_dim=16, channel_base=256, channel_max=16, mapping_layers=2))
    save_native(G, tmp_path / "g.pt")
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", "--gan", str(tmp_path / "g.pt"), "--out", str(out), "--num-images", "2",
                                  "--variants", "4", "--mix-from", "3"])
    assert r.exit_code == 0, r.output
    monkeypatch.setenv("INSTSEG_RUN", str(out))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # the kernel's temp folder: the labelling leaves nothing
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel then uses its inline backend
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "2 images" in outputs and "masks decode" in outputs
    assert any(o.get("output_type") == "display_data" for c in nb.cells for o in c.get("outputs", []))
    assert not list((tmp_path / "tmp").rglob("annotations.json"))  # the labelled folder was removed
    source = "".join(c.source for c in nb.cells)
    assert "natural_key" in source and "legend" in source and "tqdm.auto" in source
