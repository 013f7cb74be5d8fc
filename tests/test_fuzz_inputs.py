"""Fuzz suite (issue 12): malformed inputs generated in code across the CLI, the stdio
service, bundle reading and Live Link CSV. Each case asserts the exit code or error type,
and that nothing was written outside the output folder.

Kept fast: bundle and CSV cases run in this process; all CLI cases run in ONE backend
process (``backend.cli.main`` called per case, the engine cached) and all service cases go
to ONE ``serve --stdio`` process. Both run this repository's code from a foreign folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from headrecon_addon.bundle import BundleError, load_bundle
from headrecon_addon.livelink import (BLENDSHAPES, HEADER, LiveLinkError, LiveLinkFrame,
                                      LiveLinkTake, format_csv, parse_csv)

REPO = Path(__file__).resolve().parent.parent


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# =============================================================================== bundles
@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path) -> Path:
    from backend.files.bundle import write_dev_bundle

    out = tmp_path_factory.mktemp("fuzz") / "good"
    write_dev_bundle(out, seed=3, assets=assets_dir)
    load_bundle(out)  # the base case is valid
    return out


def _json_edit(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def mutate(b: Path) -> None:
        doc = json.loads((b / "result.json").read_text())
        new = fn(doc)
        (b / "result.json").unlink()
        (b / "result.json").write_text(json.dumps(doc if new is None else new))
    return mutate


def _raw(name: str, data: bytes | str) -> Callable[[Path], None]:
    def mutate(b: Path) -> None:
        (b / name).unlink(missing_ok=True)
        (b / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return mutate


def _rig_edit(fn: Callable[[dict[str, np.ndarray]], None]) -> Callable[[Path], None]:
    def mutate(b: Path) -> None:
        with np.load(b / "rig.npz") as d:
            arrays = {k: d[k] for k in d.files}
        fn(arrays)
        (b / "rig.npz").unlink()
        np.savez(b / "rig.npz", **arrays)
    return mutate


def _huge_header(b: Path) -> None:
    """rig.npz whose ``faces`` header claims 10^12 elements in a few bytes."""
    with np.load(b / "rig.npz") as d:
        arrays = {k: d[k] for k in d.files}
    (b / "rig.npz").unlink()
    with zipfile.ZipFile(b / "rig.npz", "w") as zf:
        for k, a in arrays.items():
            if k == "faces":
                header = {"descr": "<i4", "fortran_order": False, "shape": (1000000, 1000000)}
                import io
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(buf, header)
                zf.writestr(k + ".npy", buf.getvalue() + b"\0" * 64)
            else:
                import io
                buf = io.BytesIO()
                np.lib.format.write_array(buf, a)
                zf.writestr(k + ".npy", buf.getvalue())


def _set(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def fn(doc: dict[str, Any]) -> None:
        d = doc
        for key in path[:-1]:
            d = d.setdefault(key, {}) if isinstance(d.get(key), dict) or key not in d else d[key]
        d[path[-1]] = value
    return fn


def _rig_set(key: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict[str, np.ndarray]], None]:
    def edit(arrays: dict[str, np.ndarray]) -> None:
        arrays[key] = fn(arrays[key])
    return edit


BUNDLE_CASES: dict[str, Callable[[Path], None]] = {
    "json-empty": _raw("result.json", ""),
    "json-garbage": _raw("result.json", "{not json"),
    "json-binary": _raw("result.json", bytes(range(256))),
    "json-list": _raw("result.json", "[1, 2]"),
    "json-null": _raw("result.json", "null"),
    "json-nested": _raw("result.json", "[" * 100000 + "]" * 100000),
    "json-nested-obj": _raw("result.json", '{"a":' * 50000 + "1" + "}" * 50000),
    "json-5000-digits": _raw("result.json", '{"format_version": ' + "9" * 5000 + "}"),
    "json-nan": _raw("result.json", '{"format_version": NaN, "files": {}}'),
    "json-utf16": _raw("result.json", '{"format_version": 1}'.encode("utf-16")),
    "no-result": lambda b: (b / "result.json").unlink(),
    "version-true": _json_edit(_set(["format_version"], True)),
    "version-str": _json_edit(_set(["format_version"], "1")),
    "version-2": _json_edit(_set(["format_version"], 2)),
    "version-float": _json_edit(_set(["format_version"], 1.5)),
    "version-null": _json_edit(_set(["format_version"], None)),
    "files-list": _json_edit(_set(["files"], ["rig.npz"])),
    "files-null": _json_edit(_set(["files"], None)),
    "files-missing": _json_edit(lambda d: d.pop("files")),
    "rig-missing-file": lambda b: (b / "rig.npz").unlink(),
    "rig-dotdot": _json_edit(lambda d: d["files"].__setitem__("rig", "../rig.npz")),
    "rig-abs": _json_edit(lambda d: d["files"].__setitem__("rig", "/etc/passwd")),
    "rig-int": _json_edit(lambda d: d["files"].__setitem__("rig", 5)),
    "rig-empty-name": _json_edit(lambda d: d["files"].__setitem__("rig", "")),
    "rig-dir": _json_edit(lambda d: d["files"].__setitem__("rig", ".")),
    "rig-empty": _raw("rig.npz", b""),
    "rig-garbage": _raw("rig.npz", os.urandom(4096)),
    "rig-truncated": lambda b: _raw("rig.npz", (b / "rig.npz").read_bytes()[:5000])(b),
    "rig-pickle": _raw("rig.npz", b"\x80\x04K\x01."),
    "rig-huge-header": _huge_header,
    "rig-no-faces": _rig_edit(lambda a: a.pop("faces")),
    "rig-no-verts": _rig_edit(lambda a: a.pop("v_neutral")),
    "faces-negative": _rig_edit(_rig_set("faces", lambda f: f - 10)),
    "faces-too-big": _rig_edit(_rig_set("faces", lambda f: f + 10**6)),
    "faces-int32-wrap": _rig_edit(_rig_set("faces", lambda f: f.astype(np.int64) + 2**32)),
    "faces-float": _rig_edit(_rig_set("faces", lambda f: f.astype(np.float64) + 0.5)),
    "faces-wrong-shape": _rig_edit(_rig_set("faces", lambda f: f.reshape(-1)[:-1])),
    "faces-str": _rig_edit(_rig_set("faces", lambda f: np.array(["a", "b"]))),
    "faces-empty-3d": _rig_edit(_rig_set("faces", lambda f: f[None])),
}
for _i, _key in enumerate(("weights", "v_template", "shapedirs", "J_regressor", "posedirs")):
    BUNDLE_CASES[f"{_key}-nan"] = _rig_edit(
        lambda a, k=_key: a.__setitem__(k, np.full_like(a[k], np.nan, dtype=np.float32)) if k in a
        else a.__setitem__("faces", a["faces"] - 10**6))
    BUNDLE_CASES[f"{_key}-wrong-shape"] = _rig_edit(
        lambda a, k=_key: a.__setitem__(k, np.zeros((3,), np.float32)) if k in a
        else a.__setitem__("faces", a["faces"] + 10**6))
for _v in ("nan", "inf", "-inf", '"x"', "null", "1e400"):
    BUNDLE_CASES[f"displacement-{_v}"] = _json_edit(lambda d, v=_v: (
        d["files"].__setitem__("displacement_png", "rig.npz"),
        d.setdefault("detail", {}).__setitem__("displacement", {"blender_displace": {
            "midlevel": json.loads(v) if v not in ("nan", "inf", "-inf", "1e400") else float(v),
            "strength": 1.0}})) and None)


@pytest.mark.parametrize("case", sorted(BUNDLE_CASES))
def test_fuzz_bundle(case: str, good_bundle: Path, tmp_path: Path) -> None:
    b = tmp_path / "b"
    shutil.copytree(good_bundle, b, copy_function=os.link)
    BUNDLE_CASES[case](b)
    before = _tree(tmp_path)
    with pytest.raises(BundleError):
        load_bundle(b)
    assert _tree(tmp_path) == before


# ============================================================================= Live Link
def _csv(rows: list[list[str]], sep: str = "\n") -> str:
    return sep.join(",".join(r) for r in rows) + sep


_GOOD_ROW = ["00:00:01:00.000", str(len(BLENDSHAPES) + 9)] + ["0.5"] * (len(HEADER) - 2)


def _bad_value(v: str) -> str:
    row = list(_GOOD_ROW)
    row[3] = v
    return _csv([list(HEADER), row])


CSV_CASES: dict[str, tuple[str, float]] = {
    "empty": ("", 60), "blank-lines": ("\n\n\n", 60), "bom-only": ("\ufeff", 60),
    "no-timecode": (_csv([["a", "b"], ["1", "2"]]), 60),
    "no-known-columns": (_csv([["Timecode", "x"], ["00:00:00:00", "1"]]), 60),
    "header-only": (_csv([list(HEADER)]), 60),
    "short-row": (_csv([list(HEADER), _GOOD_ROW[:5]]), 60),
    "cr-only-short-row": (_csv([list(HEADER), _GOOD_ROW[:5]], sep="\r"), 60),
    "huge-field": (_csv([list(HEADER), [_GOOD_ROW[0], "1", "9" * 140000]]), 60),
    "huge-quoted-field": ('"' + "x" * 140000 + '"\n', 60),
    "unterminated-quote": (_csv([list(HEADER)]) + '"abc', 60),
    "nul-bytes": ("Time\0code\n\0", 60),
    "backwards": (_csv([list(HEADER), _GOOD_ROW, ["00:00:00:00.000"] + _GOOD_ROW[1:]]), 60),
}
for _v in ("nan", "inf", "-inf", "NaN", "1e999", "x", "", "0x10", "--1", "1e", "∞"):
    CSV_CASES[f"value-{_v!r}"] = (_bad_value(_v), 60)
for _tc in ("", "x", "1:2:3", "00:00:00", "00:60:00:00", "00:00:60:00", "00:00:00:60",
            "9" * 400 + ":00:00:00", "00:00:00:00." + "9" * 400, "00:00:00:" + "9" * 400,
            "-1:00:00:00", "00:00:00:00:00", "aa:bb:cc:dd", "00:00:00:00.x"):
    CSV_CASES[f"timecode-{_tc[:20]!r}-{len(_tc)}"] = (
        _csv([list(HEADER), [_tc] + _GOOD_ROW[1:]]), 60)
for _fps in (float("nan"), float("inf"), -float("inf"), 0.0, -30.0, 1e308):
    CSV_CASES[f"fps-{_fps}"] = (_csv([list(HEADER), _GOOD_ROW]), _fps)


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_fuzz_livelink_csv(case: str) -> None:
    text, fps = CSV_CASES[case]
    with pytest.raises(LiveLinkError):
        parse_csv(text, fps, "fuzz.csv")


def test_fuzz_livelink_cr_only_file_reads_like_lf() -> None:
    rows = [list(HEADER), _GOOD_ROW]
    a, b = parse_csv(_csv(rows, "\r"), 60), parse_csv(_csv(rows, "\n"), 60)
    assert [f.weights for f in a.frames] == [f.weights for f in b.frames]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_fuzz_livelink_writer_refuses_non_finite(value: float) -> None:
    frame = LiveLinkFrame(0)
    frame.weights = {"jawOpen": value}
    with pytest.raises(LiveLinkError):
        format_csv(LiveLinkTake(fps=60, frames=[frame]))


# ================================================================================== CLI
_DRIVER = r"""
import json, os, sys, contextlib, io
from backend.cli import main
cases = json.load(sys.stdin)
codes = []
for argv in cases:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        code = "exception:" + type(exc).__name__
    codes.append(code)
print("CODES " + json.dumps(codes), flush=True)
"""


def _cli_cases(sandbox: Path, photo: Path) -> list[tuple[list[str], int, str]]:
    """(argv, expected exit code, the one path the case may create) for malformed inputs."""
    s = str(sandbox)
    files = sandbox / "inputs"
    files.mkdir()
    out = f"{s}/out"
    photos = {
        "empty.jpg": b"", "text.jpg": b"hello", "random.png": os.urandom(2048),
        "trunc.jpg": photo.read_bytes()[:2000], "html.png": b"<html></html>",
        "png-head.png": b"\x89PNG\r\n\x1a\n" + os.urandom(64),
        "jpeg-head.jpg": b"\xff\xd8\xff\xe0" + os.urandom(64),
        "gif.gif": b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "zeros.jpg": bytes(4096),
        "pdf.jpg": b"%PDF-1.4\n%\xe2\xe3", "nul-name.jpg": b"\0" * 10,
    }
    from PIL import Image
    for name, data in photos.items():
        (files / name).write_bytes(data)
    Image.new("RGB", (1, 1)).save(files / "one.png")
    Image.new("RGB", (4, 4000)).save(files / "sliver.png")
    Image.new("L", (64, 64), 128).save(files / "gray.png")
    Image.new("RGBA", (64, 64)).save(files / "clear.png")
    (files / "adir.jpg").mkdir()
    cases: list[tuple[list[str], int, str]] = []
    for name in sorted(os.listdir(files)):
        cases.append((["reconstruct", str(files / name), "-o", out], 2, out))
    for p in ("", " ", "nope.jpg", f"{s}/missing/x.jpg", "/dev/null", "/proc/self/status",
              "\x7f.jpg", "-", "~/x.jpg", "a" * 300 + ".jpg"):
        cases.append((["reconstruct", p, "-o", out], 2, out))
    occupied = sandbox / "occupied"
    occupied.mkdir()
    (occupied / "photo.jpg").write_bytes(b"user data")
    a_file = sandbox / "file.txt"
    a_file.write_text("user data")
    for o in ("", " ", s, str(occupied), str(a_file), f"{a_file}/sub", "/", "/proc/x",
              f"{s}/" + "n" * 300, f"{s}/{'m' * 256}/x", "/dev/null"):
        cases.append((["reconstruct", str(photo), "-o", o], 2, ""))
    usage = [[], ["reconstruct"], ["reconstruct", "x.jpg"], ["reconstruct", "-o", out],
             ["bogus"], ["reconstruct", "x", "-o", out, "--quality", "ultra"],
             ["reconstruct", "x", "-o", out, "--unknown"], ["serve", "--http", "x"],
             ["serve", "--http", "99999999999999999999x"], ["serve", "--keep-jobs", "-1"],
             ["serve", "--keep-jobs", "1e9"], ["serve", "--max-upload-mb", "0"],
             ["serve", "--max-upload-mb", "nan"], ["capture"], ["capture", "x"],
             ["capture", "x", "--bundle"], ["--verbose=3"], ["-x"]]
    for v in ("nan", "inf", "-inf", "0", "-1", "1e9", "x", "", "1e400", "NaN", "0x1"):
        usage.append(["capture", "x.jpg", "--bundle", s, "-o", f"{out}.csv", "--fps", v])
        if v != "0":  # --smooth 0 means no smoothing
            usage.append(["capture", "x.jpg", "--bundle", s, "-o", f"{out}.csv", "--smooth", v])
    for argv in usage:
        cases.append((argv, 64, ""))
    for o in ("x.txt", "x", ".csv/", ""):
        cases.append((["capture", str(photo), "--bundle", s, "-o", f"{s}/{o}"], 2, ""))
    for bundle in (s, str(a_file), f"{s}/none", ""):
        cases.append((["capture", str(photo), "--bundle", bundle, "-o", f"{out}.csv"], 2, ""))
    return cases


def test_fuzz_cli(tmp_path: Path, eval_dir: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    photo = sandbox / "face.jpg"
    photo.write_bytes((eval_dir / "photos" / "expression_5.jpg").read_bytes())
    cases = _cli_cases(sandbox, photo)
    before = _tree(sandbox)
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp_path))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps([c[0] for c in cases]),
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("CODES ")]
    assert lines, proc.stderr[-3000:]
    codes = json.loads(lines[-1][6:])
    failures = [(argv, want, got) for (argv, want, _), got in zip(cases, codes) if got != want]
    allowed = {str(Path(c[2]).relative_to(sandbox)) for c in cases if c[2]}
    extra = sorted(p for p in _tree(sandbox) - before
                   if not any(p == a or p.startswith(a + "/") for a in allowed))
    assert list(cwd.iterdir()) == [], "written into the working folder"
    print(f"CLI fuzz: {len(cases)} cases, {len(failures)} failures")
    assert not failures, "\n".join(f"{a!r}: want {w}, got {g}" for a, w, g in failures[:40])
    assert not extra, extra
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


# ============================================================================== service
SERVICE_LINES: list[Any] = [
    "not json", "{", "[]", "1", "null", '"str"', "{}", '{"type": 5}', '{"type": "nope", "id": "a"}',
    '{"id": {"x": 1}, "type": "health"}', '[' * 50000 + ']' * 50000, '{"x": ' + "9" * 5000 + "}",
    json.dumps({"id": "r1", "type": "reconstruct"}),
    json.dumps({"id": "r2", "type": "reconstruct", "photo": 5}),
    json.dumps({"id": "r3", "type": "reconstruct", "photo": "relative.jpg"}),
    json.dumps({"id": "r4", "type": "reconstruct", "photo": "/nonexistent/x.jpg"}),
    json.dumps({"id": "r5", "type": "reconstruct", "photo": "/etc/passwd"}),
    json.dumps({"id": "r6", "type": "reconstruct", "photo": "/", "options": {}}),
    json.dumps({"id": "r7", "type": "reconstruct", "photo": "/etc/passwd",
                "options": {"quality": "ultra"}}),
    json.dumps({"id": "r8", "type": "reconstruct", "photo": "/etc/passwd", "options": "x"}),
    json.dumps({"id": "r9", "type": "reconstruct", "photo": "/etc/passwd",
                "options": {"device": "cuda:99", "flame": "/etc/passwd"}}),
    json.dumps({"id": "c1", "type": "cancel", "job": "../../x"}),
    json.dumps({"id": "c2", "type": "cancel", "job": 5}),
    json.dumps({"id": "l1", "type": "release", "job": "../../etc"}),
    json.dumps({"id": "l2", "type": "release", "job": "/tmp"}),
    json.dumps({"id": "l3", "type": "release"}),
    "\x00\x01\x02", "\ufeff{}", " " * 1000, json.dumps({"id": "x" * 100000, "type": "health"}),
]


def test_fuzz_service_stdio(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--stdio"], cwd=cwd, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    assert b'"ready"' in proc.stdout.readline()
    for line in SERVICE_LINES:
        proc.stdin.write(line.encode("utf-8", "surrogatepass") + b"\n")
    proc.stdin.write(b'{"id": "end", "type": "health"}\n')
    proc.stdin.flush()
    answers = []
    while True:
        raw = proc.stdout.readline()
        assert raw, "the service died"
        answers.append(json.loads(raw))
        if answers[-1].get("id") == "end":
            break
    proc.stdin.write(b'{"id": "bye", "type": "shutdown"}\n')
    proc.stdin.flush()
    _, err = proc.communicate(timeout=60)
    print(f"service fuzz: {len(SERVICE_LINES)} cases")
    assert proc.returncode == 0, err[-2000:]
    assert b"Traceback" not in err, err[-3000:]
    errors = [a for a in answers if a.get("type") == "error"]
    assert len(errors) >= len(SERVICE_LINES) - 3, answers  # nearly every line answered with an error
    assert list(cwd.iterdir()) == []
    assert not Path("/x").exists()
