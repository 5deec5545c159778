import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("YOLO_OFFLINE", "1")

from instseg.generator import Generator, GeneratorConfig  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def tiny_config(**kw) -> GeneratorConfig:
    base = dict(resolution=16, z_dim=8, w_dim=8, channel_base=64, channel_max=8, mapping_layers=2)
    base.update(kw)
    return GeneratorConfig(**base)


def randomise(G: Generator, seed: int = 0) -> Generator:
    """Give every parameter and buffer non-trivial values (noise strengths, biases, w_avg too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(G.parameters()) + [b for n, b in G.named_buffers() if n != "fir"]:
            t.copy_(torch.randn(t.shape, generator=g) * 0.5)
    return G.eval()


@pytest.fixture
def tiny_G() -> Generator:
    torch.manual_seed(0)
    return randomise(Generator(tiny_config()))


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A random 32 px generator in the native format (for CLI runs)."""
    from instseg.checkpoints import save_native

    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=32, z_dim=16, w_dim=16, channel_base=256, channel_max=16, mapping_layers=2))
    path = tmp_path_factory.mktemp("gan") / "tiny.pt"
    save_native(G, path)
    return path


def invoke(args, **kw):
    """The CLI in-process, every argument as a string."""
    from click.testing import CliRunner

    from instseg.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def one_line_error(r, *needles):
    """A refusal as users must see it: exit 2, a last line 'Error: ...' holding each needle, no traceback."""
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), r.output
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    for n in needles:
        assert n in lines[-1], lines[-1]


def run_args(ckpt, out, *extra):
    """`instseg run` on a tiny generator, small and fast: 4 variants, crossover 3."""
    return ["run", "--gan", ckpt, "--out", out, "--variants", "4", "--mix-from", "3", *extra]


def made_run(ckpt, out, images: int):
    """A finished tiny run of `images` seeds in `out` (for tests that read or mangle one)."""
    r = invoke(run_args(ckpt, out, "--num-images", str(images)))
    assert r.exit_code == 0, r.output
    return out
