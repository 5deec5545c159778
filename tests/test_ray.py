"""Ray scale-out on a local 2-CPU cluster: same dataset as one process, even when a worker dies."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install ".[ray]")')

INSTSEG = [sys.executable, "-m", "instseg.cli"]


def _cmd(ckpt, out, *extra):
    return INSTSEG + ["run", "--gan", str(ckpt), "--out", str(out), "--variants", "4", "--mix-from", "3",
                      "--seeds", "0-11", "--batch", "2", *extra]


def _dataset(d):
    data = json.loads((d / "annotations.json").read_text())
    images = sorted((im["id"], im["file_name"]) for im in data["images"])
    anns = [(a["id"], a["image_id"], a["segmentation"]["counts"], round(a["score"], 6)) for a in data["annotations"]]
    pixels = {f: (d / "images" / f).read_bytes() for _, f in images}
    return images, anns, pixels


@pytest.fixture(scope="module")
def one_process(tiny_ckpt, tmp_path_factory):
    """One process with one thread, as each CPU actor runs: float32 convolutions sum in another
    order with other thread counts, which moves scores in their 7th digit."""
    out = tmp_path_factory.mktemp("one") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(_cmd(tiny_ckpt, out), check=True, capture_output=True, cwd=out.parent, env=env)
    return _dataset(out)


def _worker_pids():
    p = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True)
    return [int(line.split()[0]) for line in p.stdout.splitlines() if "ray::_Worker" in line]


@pytest.mark.slow
def test_two_local_workers_write_the_same_dataset_as_one_process(tiny_ckpt, tmp_path, one_process):
    out = tmp_path / "run"
    p = subprocess.run(_cmd(tiny_ckpt, out, "--ray", "local", "--workers", "2"), capture_output=True, text=True,
                       cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert _dataset(out) == one_process


@pytest.mark.slow
def test_a_worker_killed_mid_run_still_gives_the_complete_identical_dataset(tiny_ckpt, tmp_path, one_process):
    out = tmp_path / "run"
    killed = []

    def killer():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            recs = list((out / "records").glob("*.json")) if (out / "records").exists() else []
            pids = _worker_pids()
            if len(recs) >= 2 and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    p = subprocess.run(_cmd(tiny_ckpt, out, "--ray", "local", "--workers", "2", "--variants", "4"),
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    t.join(timeout=5)
    assert p.returncode == 0, p.stderr[-2000:]
    assert killed, "no worker was killed mid-run"
    assert _dataset(out) == one_process
