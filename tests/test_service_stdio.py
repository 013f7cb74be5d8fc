"""The stdio service as the Blender add-on uses it: one real ``python -m backend serve``
process for the module, JSON lines on its stdin/stdout.

These tests need no finished job, so they run whether or not the engine has loaded yet.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path

import pytest
from PIL import Image

import backend
from tests.service_support import ServiceProcess, alive

MAX_UPLOAD_MB = 1


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path):
    jobs = tmp_path_factory.mktemp("jobs")
    svc = ServiceProcess("--assets", str(assets_dir), "--jobs-dir", str(jobs),
                         "--max-upload-mb", str(MAX_UPLOAD_MB))
    svc.jobs_dir = jobs
    yield svc
    assert svc.close() == 0, svc.stderr[-10:]


def test_health_answers_while_the_engine_loads(service: ServiceProcess) -> None:
    rep = service.request({"id": 7, "type": "health"})
    assert rep["type"] == "health" and rep["id"] == 7
    assert rep["version"] == backend.__version__
    assert rep["pid"] == service.proc.pid
    assert rep["state"] in ("loading", "ready", "error")
    assert rep["protocol"] == 1


def _bad_images(tmp: Path, photo: Path) -> list[tuple[str, Path]]:
    """Files that are not usable photos, each rejected before a job starts."""
    rng = random.Random(1)
    real = photo.read_bytes()
    files: dict[str, bytes] = {
        "empty.jpg": b"",
        "text.jpg": b"hello, this is not an image\n",
        "random.png": bytes(rng.getrandbits(8) for _ in range(4000)),
        "jpeg_soi_only.jpg": b"\xff\xd8\xff\xe0",
        "jpeg_20_bytes.jpg": real[:20],
        "png_sig_garbage.png": b"\x89PNG\r\n\x1a\n" + bytes(rng.getrandbits(8) for _ in range(500)),
        "tiff_garbage.tif": b"II*\x00" + bytes(rng.getrandbits(8) for _ in range(300)),
        "bmp_garbage.bmp": b"BM" + bytes(rng.getrandbits(8) for _ in range(300)),
        "too_big.jpg": real + bytes(MAX_UPLOAD_MB << 20),
        "html.png": b"<html><body>hi</body></html>",
        "pdf.jpg": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
        "zip.png": b"PK\x03\x04" + bytes(100),
    }
    for size in ((8, 8), (1, 300), (15, 15)):
        buf = io.BytesIO()
        Image.new("RGB", size, (90, 60, 40)).save(buf, "PNG")
        files[f"tiny_{size[0]}x{size[1]}.png"] = buf.getvalue()
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "GIF")
    files["gif.png"] = buf.getvalue()
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, "PNG")
    png = bytearray(buf.getvalue())
    png[20] ^= 0xFF  # IHDR CRC mismatch
    files["png_bad_crc.png"] = bytes(png)
    # flip bytes in the header region of real PNG/JPEG files
    for i in range(20):
        data = bytearray(real[:64] if i % 2 else real[:300])
        for _ in range(6):
            data[rng.randrange(2, len(data))] = rng.getrandbits(8)
        files[f"mangled_{i}.jpg"] = bytes(data)
    out = []
    for name, data in files.items():
        (tmp / name).write_bytes(data)
        out.append((name, tmp / name))
    return out


def _malformed_lines(tmp: Path, bad_png: Path, eval_photo: Path) -> list[bytes]:
    """Requests that must each get exactly one error reply."""
    d = json.dumps
    lines: list[bytes] = [
        b"not json", b"{", b"}", b"{'type': 'health'}", b'{"type": "health"', b"[]", b"[1,2]",
        b"1", b"-3.5", b'"health"', b"null", b"true", b"{}", b"   \t  ", b'{"type": null}',
        b'{"type": 5}', b'{"type": ["health"]}', b'{"type": "HEALTH"}', b'{"type": "reconstruct!"}',
        b'{"type": "eval", "code": "import os"}', b'{"type": "health", "id": 1.5}',
        b'{"type": "health", "id": [1]}', b'{"type": "health", "id": {"a": 1}}',
        b'{"type": "health", "id": true}', b'{"type": "health", "id": NaN}',
        b'{"type": "health", "id": 1e400}', b'{"type": "health", "id": 9007199254740993}',
        d({"type": "health", "id": "x" * 65}).encode(), b"\xff\xfe\xfd", b'{"type": "\xc3("}',
        b"[" * 100000, b'{"a":' * 50000, b"\x00\x01\x02", b'{"type": "health"}{"type": "health"}',
        b'{"type": "health", "id": 1} trailing',
    ]
    recon = [
        {}, {"photo": None}, {"photo": 5}, {"photo": ""}, {"photo": ["a"]}, {"photo": {"p": 1}},
        {"photo": "relative/photo.jpg"}, {"photo": "../../etc/passwd"}, {"photo": "photo.jpg"},
        {"photo": "/nonexistent/dir/photo.jpg"}, {"photo": str(tmp)}, {"photo": "/dev/null"},
        {"photo": "/dev/zero"}, {"photo": "/proc/self/mem"}, {"photo": "/"},
        {"photo": str(bad_png) + "\x00.jpg"}, {"photo": "/" + "a" * 5000},
        {"photo": str(tmp / "fifo")}, {"photo": str(tmp / "dangling")},
        {"photo": "~/photo.jpg"}, {"photo": "file:///etc/passwd"},
        {"photo": str(eval_photo), "options": []}, {"photo": str(eval_photo), "options": "fast"},
        {"photo": str(eval_photo), "options": {"quality": "ultra"}},
        {"photo": str(eval_photo), "options": {"quality": 3}},
        {"photo": str(eval_photo), "options": {"quality": ["fast"]}},
        {"photo": str(eval_photo), "options": {"flame": "/etc/passwd"}},
        {"photo": str(eval_photo), "options": {"assets": "/"}},
        {"photo": str(eval_photo), "options": {"device": "cuda"}},
        {"photo": str(eval_photo), "options": {"extra": {}}},
        {"photo": str(eval_photo), "options": {"max_side": 10}},
        {"photo": str(eval_photo), "options": {"max_side": 10**9}},
        {"photo": str(eval_photo), "options": {"max_side": "1024"}},
        {"photo": str(eval_photo), "options": {"max_side": True}},
        {"photo": str(eval_photo), "options": {"max_side": 512.0}},
        {"photo": str(eval_photo), "options": {"seed": -1}},
        {"photo": str(eval_photo), "options": {"seed": 2**40}},
        {"photo": str(eval_photo), "options": {"detail": "yes"}},
        {"photo": str(eval_photo), "options": {"texture": 1}},
        {"photo": str(eval_photo), "options": {"__class__": 1}},
        {"photo": str(eval_photo), "options": {"x" * 1000: 1}},
    ]
    lines += [d({"id": f"r{i}", "type": "reconstruct", **r}).encode() for i, r in enumerate(recon)]
    for kind in ("cancel", "release"):
        for job in (None, 5, "", "../..", "0123456789abcdef", "0123456789ABCDEF", "abc",
                    "0123456789abcdef/../x", ["0123456789abcdef"], "g" * 16):
            msg = {"id": "j", "type": kind}
            if job is not None:
                msg["job"] = job
            lines.append(d(msg).encode())
    # random mutations of a request for a bad image: every variant is still an error
    rng = random.Random(7)
    base = d({"id": 1, "type": "reconstruct", "photo": str(bad_png),
              "options": {"quality": "fast"}}).encode()
    safe = [b for b in range(256) if b not in (10, 13)]
    for i in range(120):
        data = bytearray(base)
        op = i % 3
        if op == 0:
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.choice(safe)
        elif op == 1:
            data = data[: rng.randrange(1, len(data))]
        else:
            pos = rng.randrange(len(data))
            data[pos:pos] = bytes(rng.choice(safe) for _ in range(rng.randint(1, 8)))
        lines.append(bytes(data))
    for _ in range(20):
        lines.append(bytes(rng.choice(safe) for _ in range(rng.randint(1, 200))))
    return lines


def test_fuzz_every_malformed_message_and_image_gets_one_error(
        service: ServiceProcess, tmp_path: Path, eval_dir: Path) -> None:
    photo = eval_dir / "photos" / "IMG_0392_inputs.jpg"
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "missing.jpg", tmp_path / "dangling")
    images = _bad_images(tmp_path, photo)
    lines = _malformed_lines(tmp_path, tmp_path / "png_sig_garbage.png", photo)
    lines.append(b"x" * (2 << 20))  # longer than the 1 MiB line limit
    assert len(images) + len(lines) >= 200

    for name, path in images:
        rep = service.request({"id": name, "type": "reconstruct", "photo": str(path)}, timeout=30)
        assert rep["type"] == "error" and rep["id"] == name, rep
        assert rep["code"] == "bad_input", rep
        assert rep["message"].endswith(".") and "\n" not in rep["message"]
    for line in lines:
        service.send_raw(line + b"\n")
        rep = service.reply(timeout=30)
        assert rep["type"] == "error", (line[:200], rep)
        assert rep["code"] in ("bad_request", "bad_input", "not_found"), (line[:200], rep)
        assert isinstance(rep["message"], str) and rep["message"]

    assert alive(service.proc.pid)
    assert service.request({"id": "after", "type": "health"})["type"] == "health"
    assert list(service.jobs_dir.iterdir()) == []  # nothing was written for refused requests
    assert service.bad_stdout == []  # stdout carried protocol lines only


def test_request_that_must_not_be_read_is_refused(service: ServiceProcess, tmp_path: Path) -> None:
    """An existing file outside any image format is refused without being copied."""
    secret = tmp_path / "secret.png"
    secret.write_text("password=hunter2\n")
    rep = service.request({"id": "s", "type": "reconstruct", "photo": str(secret)})
    assert rep["code"] == "bad_input"
    assert "hunter2" not in json.dumps(rep)
    assert list(service.jobs_dir.iterdir()) == []
