import hashlib
import http.server
import threading

import pytest

from instseg.errors import DownloadError, UserError
from instseg.zoo import PRESETS, download, resolve_gan, url_path


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b"x" * 100_000

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.path.startswith("/cut"):  # promise the whole body, send a tenth, hang up
            self.wfile.write(self.body[:10_000])
            self.wfile.flush()
            self.connection.close()
        else:
            self.wfile.write(self.body)

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_interrupted_download_leaves_nothing_in_the_cache(server, tmp_path):
    dest = tmp_path / "cache" / "g.pkl"
    with pytest.raises(DownloadError) as e:
        download(f"{server}/cut/g.pkl", dest)
    assert str(dest) in str(e.value) and "/cut/g.pkl" in str(e.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_records_and_checks_sha256(server, tmp_path):
    url = f"{server}/ok/g.pkl"
    r = resolve_gan(url, tmp_path)
    assert r.path == url_path(url, tmp_path) and r.path.read_bytes() == _Handler.body
    sidecar = r.path.with_name(r.path.name + ".sha256")
    assert sidecar.read_text().strip() == hashlib.sha256(_Handler.body).hexdigest()
    r.path.write_bytes(b"tampered")
    with pytest.raises(UserError, match="does not match its sha256"):
        resolve_gan(url, tmp_path)
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(url, tmp_path / "other.pkl", sha256="0" * 64)
    assert not (tmp_path / "other.pkl").exists()


def test_presets_cover_the_official_generators():
    need = {"ffhq", "lsun-horse", "lsun-cat", "lsun-church", "lsun-car", "afhq-cat", "afhq-dog", "afhq-wild", "metfaces"}
    assert need <= set(PRESETS)
    car = PRESETS["lsun-car"]
    assert (car.width, car.height, car.num_ws) == (512, 384, 16)
    assert all(p.num_ws == 2 * (max(p.width, p.height).bit_length() - 1) - 2 for p in PRESETS.values())
