"""Load test of ``visage serve`` on loopback: concurrent clients mixing identify and enrol.

    .venv/bin/python bench/bench_server_load.py [--requests 2000] [--clients 20] [--enrol 0.2] [--side 200]

Starts the server as a real process over a fresh gallery, then runs ``--clients`` client threads
that send ``--requests`` requests in all: identify (a dev-set photo) or, with probability
``--enrol``, an admin enrolment of a new person from a photo made unique by a small change. Then:

- **no 5xx** and no other failure is allowed;
- **no lost enrolment**: every enrolment answered 200 must be in the gallery (read directly from the
  file after the server has shut down on SIGTERM), and nothing else may be;
- latency p50/p99 per kind, and throughput.

Side by side, in the same run and on the same photos, one client calling the library in-process:
``Gallery.identify`` (visage without HTTP) and the face_recognition library's way (face_encodings,
then compare_faces against the enrolled encodings); the ratios say what the service costs.
Writes bench/results/server_load.json with --save, else bench/results/local/server_load.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from visage.gallery import Gallery
from visage.server.auth import KeyStore

from _results import add_save_flag, results_dir  # bench/_results.py

ROOT = Path(__file__).resolve().parents[1]


def photos(data: Path, side: int) -> list[tuple[str, bytes]]:
    """(identity, JPEG bytes) for up to two photos of each dev-set identity, scaled to ``side`` px,
    keeping those where one face is still found at that size (the load must be valid requests)."""
    import visage

    out = []
    for folder in sorted((data / "faces").iterdir()):
        for path in sorted(folder.iterdir())[:2]:
            img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
            img.thumbnail((side, side))
            buffer = io.BytesIO()
            img.save(buffer, "JPEG", quality=90)
            if len(visage.detect(buffer.getvalue(), landmarks68=False)) == 1:
                out.append((folder.name, buffer.getvalue()))
    return out


def unique(photo: bytes, n: int) -> bytes:
    """The photo with a tiny, request-specific change, so its hash is new (the gallery refuses repeats)."""
    img = Image.open(io.BytesIO(photo)).convert("RGB")
    pixels = np.asarray(img).copy()
    pixels[n % pixels.shape[0], (n // pixels.shape[0]) % pixels.shape[1]] ^= np.uint8(1 + n % 200)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values) * 1000
    return {"n": len(values), "mean_ms": round(float(a.mean()), 1), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p90_ms": round(float(np.percentile(a, 90)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1),
            "max_ms": round(float(a.max()), 1)}


def start_server(folder: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VISAGE_SERVER_RATE_PER_MINUTE": "1000000",
           "VISAGE_SERVER_RATE_BURST": "100000", "VISAGE_SERVER_WORKERS": str(workers)}
    log = open(folder / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "visage", "serve", "--gallery", str(folder / "gallery.db"),
                               "--state", str(folder / "server.db"), "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"the server did not start; see {folder / 'server.log'}")


def load(url: str, keys: list[str], admin: str, pool: list[tuple[str, bytes]], requests: int, clients: int,
         enrol_fraction: float, seed: int) -> dict:
    """Run the mixed load; returns latencies, statuses and the enrolments acknowledged."""
    rng = random.Random(seed)
    plan = [("enrol" if rng.random() < enrol_fraction else "identify", rng.randrange(len(pool)))
            for _ in range(requests)]
    lock = threading.Lock()
    cursor = iter(enumerate(plan))
    results = {"identify": [], "enrol": []}
    statuses: dict[str, int] = {}
    failures: list[str] = []
    acknowledged: dict[str, int] = {}
    bar = tqdm(total=requests, desc=f"{clients} clients", unit="req")

    def client(index: int):
        with httpx.Client(base_url=url, timeout=600) as http:
            while True:
                with lock:
                    item = next(cursor, None)
                if item is None:
                    return
                n, (kind, which) = item
                started = time.perf_counter()
                try:
                    if kind == "identify":
                        r = http.post("/v1/identify", headers={"X-API-Key": keys[index]},
                                      files={"image": ("probe.jpg", pool[which][1], "image/jpeg")})
                    else:
                        name = f"load-{n:05d}"
                        r = http.post("/v1/enroll", headers={"X-API-Key": admin}, data={"name": name},
                                      files=[("photos", (f"{name}.png", unique(pool[which][1], n), "image/png"))])
                    status = r.status_code
                except httpx.HTTPError as exc:
                    status, r = 0, None
                    failures.append(f"{kind}: {type(exc).__name__}: {exc}")
                elapsed = time.perf_counter() - started
                with lock:
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                    results[kind].append(elapsed)
                    if r is not None and r.status_code == 200 and kind == "enrol":
                        acknowledged[name] = r.json()["faces_added"]
                    elif r is not None and r.status_code != 200:
                        failures.append(f"{kind}: {r.status_code} {r.text[:200]}")
                    bar.update(1)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    return {"seconds": time.perf_counter() - started, "latency": results, "statuses": statuses,
            "failures": failures, "acknowledged": acknowledged}


def in_process(gallery_path: Path, pool: list[tuple[str, bytes]], n: int) -> dict:
    """One client, no HTTP: visage's Gallery.identify and face_recognition's compare_faces on the same photos."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition as fr
    probes = [pool[i % len(pool)][1] for i in range(n)]
    with Gallery(gallery_path) as g:
        known = [f.record.encoding for f in g.store.iter_faces()]
        g.identify(probes[0], audit=False)
        visage_times = []
        for probe in probes:
            t = time.perf_counter()
            g.identify(probe, audit=False)
            visage_times.append(time.perf_counter() - t)
    fr_times = []
    for probe in probes:
        t = time.perf_counter()
        image = fr.load_image_file(io.BytesIO(probe))
        for encoding in fr.face_encodings(image, fr.face_locations(image)):
            fr.compare_faces(known, encoding)
        fr_times.append(time.perf_counter() - t)
    return {"visage_in_process": percentiles(visage_times), "face_recognition_in_process": percentiles(fr_times),
            "gallery_faces": len(known)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--enrol", type=float, default=0.2, help="fraction of requests that enrol")
    parser.add_argument("--side", type=int, default=200, help="long side of the photos sent, px")
    parser.add_argument("--workers", type=int, default=2, help="the server's gallery connections")
    parser.add_argument("--baseline", type=int, default=60, help="in-process identifications for the comparison")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON to write (default: server_load.json in the results folder)")
    add_save_flag(parser)
    args = parser.parse_args()
    if args.out is None:
        args.out = results_dir(args.save) / "server_load.json"

    pool = photos(args.data, args.side)
    with tempfile.TemporaryDirectory(prefix="visage-load-") as tmp:
        folder = Path(tmp)
        store = KeyStore(folder / "server.db")
        keys = [store.create(f"client {i}") for i in range(args.clients)]
        admin = store.create("enroller", admin=True)
        store.close()
        server, url = start_server(folder, args.workers)
        try:
            # Seed the gallery so identifications have someone to find; load the models.
            for identity, photo in pool[::2]:
                httpx.post(url + "/v1/enroll", headers={"X-API-Key": admin}, data={"name": identity},
                           files=[("photos", ("seed.jpg", photo, "image/jpeg"))], timeout=600)
            run = load(url, keys, admin, pool, args.requests, args.clients, args.enrol, args.seed)
        finally:
            server.send_signal(signal.SIGTERM)
            exit_code = server.wait(120)
        server_log = (folder / "server.log").read_text(errors="replace")
        with Gallery(folder / "gallery.db") as g:
            stored = {p.name: p.faces for p in g.people() if p.name.startswith("load-")}
        result, ok = summarise(args, run, stored, exit_code, server_log)
        write(args.out, result)  # the load's numbers are kept even if the comparison below fails
        baseline = in_process(folder / "gallery.db", pool, args.baseline)

    result.update(baseline)
    result["ratio_service_p50_to_in_process_p50"] = round(
        result["identify"]["p50_ms"] / baseline["visage_in_process"]["p50_ms"], 2)
    result["ratio_face_recognition_to_visage_in_process_p50"] = round(
        baseline["face_recognition_in_process"]["p50_ms"] / baseline["visage_in_process"]["p50_ms"], 2)
    # Throughput: the served rate (20 clients, HTTP, enrolments mixed in) over one in-process client's rate.
    result["ratio_service_throughput_to_in_process"] = round(
        result["throughput_rps"] / (1000 / baseline["visage_in_process"]["mean_ms"]), 2)
    write(args.out, result)
    print(json.dumps({k: result[k] for k in ("seconds", "throughput_rps", "statuses", "identify", "enrol",
                                            "enrolments_acknowledged", "enrolments_stored", "lost_enrolments",
                                            "visage_in_process", "face_recognition_in_process",
                                            "ratio_service_p50_to_in_process_p50",
                                            "ratio_service_throughput_to_in_process",
                                            "ratio_face_recognition_to_visage_in_process_p50")}, indent=2))
    print("PASS: no 5xx, no lost enrolments" if ok else "FAIL: see " + str(args.out))
    return 0 if ok else 1


def write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def summarise(args, run: dict, stored: dict, exit_code: int, server_log: str) -> tuple[dict, bool]:
    """The load's outcome as a JSON-ready dict, and whether it passed."""
    lost = sorted(set(run["acknowledged"]) - set(stored))
    miscounted = sorted(n for n in run["acknowledged"] if n in stored and stored[n] != run["acknowledged"][n])
    unexpected = sorted(set(stored) - set(run["acknowledged"]))
    five_xx = sum(v for k, v in run["statuses"].items() if k.startswith("5") or k == "0")
    result = {
        "requests": args.requests, "clients": args.clients, "enrol_fraction": args.enrol, "photo_side": args.side,
        "server_workers": args.workers, "seconds": round(run["seconds"], 1),
        "throughput_rps": round(args.requests / run["seconds"], 2), "statuses": run["statuses"],
        "five_xx_or_dropped": five_xx, "other_failures": run["failures"][:20],
        "identify": percentiles(run["latency"]["identify"]), "enrol": percentiles(run["latency"]["enrol"]),
        "enrolments_acknowledged": len(run["acknowledged"]), "enrolments_stored": len(stored),
        "lost_enrolments": lost, "miscounted_enrolments": miscounted, "unexpected_people": unexpected,
        "server_exit_code": exit_code,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_end": round(os.getloadavg()[0], 2)},
    }
    if run["failures"]:
        result["server_log_tail"] = server_log[-3000:]
    ok = five_xx == 0 and not run["failures"] and not lost and not miscounted and not unexpected
    result["passed"] = ok
    return result, ok


if __name__ == "__main__":
    sys.exit(main())
