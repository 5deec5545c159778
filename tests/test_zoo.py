import dataclasses
import hashlib
import http.server
import io
import json
import threading

import pytest
import torch
from click.testing import CliRunner

from instseg import zoo
from instseg.cli import main
from instseg.errors import DownloadError, UserError
from instseg.generator import Generator, GeneratorConfig
from instseg.zoo import download, presets, resolve_gan, url_path

# The hosts NVIDIA publishes StyleGAN2 networks on (NVlabs/stylegan2, stylegan2-ada-pytorch, stylegan3 READMEs).
NVIDIA_PREFIXES = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/stylegan2-",
    "http://d36zk2xti64re0.cloudfront.net/stylegan2/networks/stylegan2-",
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/",
    "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/stylegan2-",
    "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/stylegan3-",
)


def _tiny_bytes() -> bytes:
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=16, z_dim=8, w_dim=8, channel_base=64, channel_max=8, mapping_layers=2))
    buf = io.BytesIO()
    torch.save({"format": "instseg-native", "version": 1, "config": G.cfg.to_dict(),
                "state_dict": G.state_dict(), "meta": {}}, buf)
    return buf.getvalue()


TINY = _tiny_bytes()


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b"x" * 100_000

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        body = TINY if self.path.startswith("/tiny") else self.body
        if self.path.startswith("/nolength"):  # no Content-Length, then hang up half way
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(TINY[: len(TINY) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path.startswith("/cut"):  # promise the whole body, send a tenth, hang up
            self.wfile.write(body[:10_000])
            self.wfile.flush()
            self.connection.close()
        else:
            self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _loads(path, out_hw=None):
    from instseg.checkpoints import load_generator

    load_generator(path, out_hw=out_hw)


@pytest.fixture
def served_preset(server, monkeypatch):
    """A non-commercial preset whose official URL is gone (404) and whose mirror serves the file."""
    base = presets()["lsun-horse"]
    p = dataclasses.replace(base, name="test-gan", urls=(f"{server}/missing/g.pkl", f"{server}/tiny/g.pkl"),
                            file="g.pkl", format="native", height=16, width=16, num_ws=6, classes=(),
                            detector="none", category="thing", run={"mix_from": [3], "variants": 4})
    monkeypatch.setattr(zoo, "presets", lambda: {**presets(), "test-gan": p})
    return p


def test_a_dead_official_url_falls_through_to_the_mirror(served_preset, tmp_path):
    r = resolve_gan("test-gan", tmp_path, validate=_loads)
    assert r.path == tmp_path / "generators" / "g.pkl" and r.path.read_bytes() == TINY
    sidecar = r.path.with_name("g.pkl.sha256")
    assert sidecar.read_text().strip() == hashlib.sha256(TINY).hexdigest()
    assert sorted(p.name for p in r.path.parent.iterdir()) == ["g.pkl", "g.pkl.sha256"]


def test_all_urls_failing_names_every_url_and_the_place_for_the_file(served_preset, server, tmp_path, monkeypatch):
    p = dataclasses.replace(served_preset, urls=(f"{server}/missing/a.pkl", f"{server}/nolength/g.pkl"))
    monkeypatch.setattr(zoo, "presets", lambda: {"test-gan": p})
    with pytest.raises(DownloadError) as e:
        resolve_gan("test-gan", tmp_path, validate=_loads)
    msg = str(e.value)
    assert "/missing/a.pkl" in msg and "/nolength/g.pkl" in msg and str(tmp_path / "generators" / "g.pkl") in msg
    assert list((tmp_path / "generators").iterdir()) == []


def test_a_transfer_cut_short_without_content_length_leaves_nothing(server, tmp_path):
    dest = tmp_path / "cache" / "g.pkl"
    with pytest.raises(DownloadError):
        download(f"{server}/nolength/g.pkl", dest, validate=_loads)
    assert list((tmp_path / "cache").iterdir()) == []


def test_interrupted_download_leaves_nothing_in_the_cache(server, tmp_path):
    dest = tmp_path / "cache" / "g.pkl"
    with pytest.raises(DownloadError) as e:
        download(f"{server}/cut/g.pkl", dest)
    assert str(dest) in str(e.value) and "/cut/g.pkl" in str(e.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_killed_download_s_temp_file_is_cleaned_up(server, tmp_path):
    dest = tmp_path / "cache" / "g.pkl"
    dest.parent.mkdir(parents=True)
    stale = dest.parent / ".g.pkl.abc123.tmp"
    stale.write_bytes(b"half")
    download(f"{server}/tiny/g.pkl", dest)
    assert not stale.exists() and dest.read_bytes() == TINY


def test_download_records_and_checks_sha256(server, tmp_path):
    url = f"{server}/ok/g.pkl"
    r = resolve_gan(url, tmp_path)
    assert r.path == url_path(url, tmp_path) and r.path.read_bytes() == _Handler.body
    sidecar = r.path.with_name(r.path.name + ".sha256")
    assert sidecar.read_text().strip() == hashlib.sha256(_Handler.body).hexdigest()
    r.path.write_bytes(b"tampered")
    with pytest.raises(UserError, match=f"cached file {r.path}.*delete it"):
        resolve_gan(url, tmp_path)
    with pytest.raises(DownloadError, match="is not the expected"):
        download(url, tmp_path / "other.pkl", sha256="0" * 64)
    assert not (tmp_path / "other.pkl").exists()


def test_a_cached_file_that_fails_to_load_names_the_file_to_delete(served_preset, tmp_path, monkeypatch):
    monkeypatch.setenv("INSTSEG_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "generators" / "g.pkl"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a checkpoint")  # placed by hand: its sha256 gets recorded, then it fails to load
    r = CliRunner().invoke(main, ["run", "--gan", "test-gan", "--out", str(tmp_path / "o"), "--num-images", "1"])
    assert r.exit_code == 2
    assert f"cached file {cached}" in r.output and "delete it" in r.output


def test_a_run_carries_the_generator_licence(served_preset, tmp_path, monkeypatch):
    monkeypatch.setenv("INSTSEG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["run", "--gan", "test-gan", "--out", str(out), "--num-images", "3"])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "annotations.json").read_text())
    lic = served_preset.licence
    assert data["licenses"] == [{"id": 1, "name": lic.name, "url": lic.url}] and "non-commercial" in lic.name
    assert [im["license"] for im in data["images"]] == [1, 1, 1]
    info = data["info"]
    assert info["generator"] == "test-gan" and info["generator_sha256"] == hashlib.sha256(TINY).hexdigest()
    assert info["licence"] == lic.name and "non-commercial" in info["licence_note"]
    assert [c["name"] for c in data["categories"]] == ["thing"]


def test_models_json_lists_every_preset_with_nvidia_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTSEG_CACHE", str(tmp_path))
    r = CliRunner().invoke(main, ["models", "--json"])
    assert r.exit_code == 0, r.output
    rows = {p["name"]: p for p in json.loads(r.output)["presets"]}
    need = {"ffhq", "lsun-horse", "lsun-cat", "lsun-church", "lsun-car", "lsun-dog", "celebahq", "afhq-cat",
            "afhq-dog", "afhq-wild", "metfaces", "toy-flat"}
    assert need <= set(rows)
    for name, p in rows.items():
        assert set(p) >= {"name", "urls", "resolution", "num_ws", "format", "licence", "classes", "detector", "cached"}
        assert all(u.startswith(NVIDIA_PREFIXES) for u in p["urls"]), name
        assert p["urls"] or name in ("toy-flat", "toy-textured")
        assert p["licence"]["commercial"] == name.startswith("toy-")
        if p["format"] == "stylegan3":  # 14 layers and ToRGB at any resolution, and the input's w
            assert p["num_ws"] == 16
        else:
            assert p["num_ws"] == 2 * (max(p["resolution"]).bit_length() - 1) - 2
    for face in ("ffhq", "celebahq", "metfaces"):
        assert rows[face]["detector"] is None and rows[face]["classes"] == [] and rows[face]["category"] == "face"
    assert rows["lsun-car"]["resolution"] == [384, 512] and rows["lsun-dog"]["classes"] == ["dog"]
    assert rows["afhq-wild"]["category"] == "animal" and rows["afhq-wild"]["detector"] is None
    assert rows["toy-flat"]["cached"]  # packaged


def test_tf_presets_list_the_official_file_then_the_older_official_mirror():
    for p in presets().values():
        if p.format == "tf":
            assert len(p.urls) == 2 and p.urls[0].startswith(NVIDIA_PREFIXES[0])
            assert p.urls[1].startswith(NVIDIA_PREFIXES[1]) and p.urls[0].rsplit("/", 1)[1] == p.urls[1].rsplit("/", 1)[1]
