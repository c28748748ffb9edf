"""Load test of ``visage serve`` on loopback: concurrent clients mixing identify and enrol.

    .venv/bin/python bench/bench_server_load.py [--requests 2000] [--clients 20] [--enrol 0.2] [--side 200]
                                                [--configs today,scaled] [--processes N] [--max-wait S]

First the **hardware limit**: the CPU-seconds one identification costs in-process (``Gallery.identify``
with one torch thread, ``time.process_time`` over ``--limit-n`` calls), and the machine's cores divided
by that: the most identifications a second this machine can do, however they are served.

Then, in the same run and on the same photos, the load against each configuration in ``--configs``:

- ``today``: the settings before this benchmark's change: one server process, no bound on the wait
  for the models (``--processes 1 --max-wait 0``);
- ``scaled``: the default settings: one process per core (``--processes``) and a bounded wait
  (``--max-wait``), so that a request that would wait longer is refused at once with 503 and
  ``Retry-After``.

Each starts the server as a real process over a fresh gallery, then runs ``--clients`` client
threads that send ``--requests`` requests in all: identify (a dev-set photo) or, with probability
``--enrol``, an admin enrolment of a new person (a bona-fide still from the dev set's pad/real,
a face new to the gallery: see :func:`new_people`). A client that gets 503 waits the
``Retry-After`` it was sent and sends the same request again. Then:

- **no 5xx** other than those 503s, and no other failure, is allowed;
- **no lost enrolment**: every enrolment answered 200 must be in the gallery (read directly from the
  file after the server has shut down on SIGTERM), and nothing else may be;
- throughput (answered requests a second) and its share of the limit; latency p50/p99 per kind of
  the admitted requests (the attempt answered 200) and of the whole exchange, retries included;
- the server's own CPU-seconds per request (its processes' CPU time over the load).

Last, one client calling the library in-process on the same photos: ``Gallery.identify`` (visage
without HTTP) and the face_recognition library's way (face_encodings, then compare_faces against
the enrolled encodings); the ratios say what the service costs.
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

from _results import DEV_DATA, add_save_flag, results_dir  # bench/_results.py
from visage.gallery import Gallery
from visage.server.auth import KeyStore


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


def new_people(data: Path, side: int, count: int, gallery: Gallery, seed: int) -> list[bytes]:
    """``count`` JPEGs (``side`` px) of bona-fide faces from the dev set's pad/real stills, one face
    each, every one a new person to ``gallery`` and to each other.

    The gallery refuses to enrol, under a new name, a face within a fifth of the 1:1 threshold of
    someone's stored face (the same face again), so a photo made unique by a changed pixel cannot
    stand for a new person. These are kept only when their encoding is at least twice that far from
    the gallery's faces and from every photo kept before them.
    """
    from visage.api import encode
    from visage.gallery.gallery import SAME_FACE_FRACTION

    limit = 2 * SAME_FACE_FRACTION * gallery.calibration().threshold
    known = [f.record.encoding for f in gallery.store.iter_faces()]
    candidates = sorted((data / "pad" / "real").iterdir())
    random.Random(seed).shuffle(candidates)
    out: list[bytes] = []
    bar = tqdm(total=count, desc="new people", unit="photo")
    for path in candidates:
        if len(out) >= count:
            break
        try:
            img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        except OSError:
            continue
        if min(img.size) < 100:
            continue
        img.thumbnail((side, side))
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=90)
        found = encode(buffer.getvalue(), encoder=gallery.encoder_key)
        if len(found) != 1:
            continue
        vector = found[0].encoding
        if known and float(np.min(np.linalg.norm(np.asarray(known) - vector, axis=1))) <= limit:
            continue
        known.append(vector)
        out.append(buffer.getvalue())
        bar.update(1)
    bar.close()
    if len(out) < count:
        raise SystemExit(f"only {len(out)} distinct new faces in {data / 'pad' / 'real'}; {count} are needed")
    return out


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


def start_server(folder: Path, workers: int, processes: int, max_wait: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VISAGE_SERVER_RATE_PER_MINUTE": "1000000",
           "VISAGE_SERVER_RATE_BURST": "100000", "VISAGE_SERVER_WORKERS": str(workers)}
    log = open(folder / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "visage", "serve", "--gallery", str(folder / "gallery.db"),
                               "--state", str(folder / "server.db"), "--port", str(port),
                               "--processes", str(processes), "--max-wait", str(max_wait)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"the server did not start; see {folder / 'server.log'}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and all its descendants (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    total, family = 0.0, {pid}
    changed = True
    while changed:
        changed = False
        for child, parent in parents.items():
            if parent in family and child not in family:
                family.add(child)
                changed = True
    for member in family:
        total += times.get(member, 0.0)
    return total


def measure_limit(pool: list[tuple[str, bytes]], n: int, cores: int, data: Path, side: int, enrolments: int,
                  seed: int) -> tuple[dict, list[bytes]]:
    """CPU-seconds per identification in-process (one torch thread), and cores / that; and the
    new-person photos the load's enrolments will send (see :func:`new_people`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="visage-limit-") as tmp:
            with Gallery(Path(tmp) / "gallery.db") as g:
                for identity, photo in pool[::2]:
                    g.enroll(identity, [photo])
                probes = [pool[i % len(pool)][1] for i in range(n)]
                g.identify(probes[0], audit=False)
                cpu, wall = time.process_time(), time.perf_counter()
                for probe in probes:
                    g.identify(probe, audit=False)
                cpu_identify, wall_identify = (time.process_time() - cpu) / n, (time.perf_counter() - wall) / n
                k = max(1, n // 4)
                fresh = new_people(data, side, enrolments + k, g, seed)
                cpu = time.process_time()
                for i, photo in enumerate(fresh[enrolments:]):
                    g.enroll(f"limit-{i:04d}", [photo])
                cpu_enrol = (time.process_time() - cpu) / k
    finally:
        torch.set_num_threads(before)
    return ({"cores": cores, "identifications_timed": n, "cpu_s_per_identify": round(cpu_identify, 4),
             "wall_s_per_identify": round(wall_identify, 4), "cpu_s_per_enrol": round(cpu_enrol, 4),
             "limit_rps": round(cores / cpu_identify, 2)}, fresh[:enrolments])


def make_plan(requests: int, enrol_fraction: float, pool_size: int, seed: int) -> list[tuple[str, int]]:
    """(kind, index) per request: identify pool[index], or enrol the index-th new person."""
    rng = random.Random(seed)
    plan, enrolled = [], 0
    for _ in range(requests):
        if rng.random() < enrol_fraction:
            plan.append(("enrol", enrolled))
            enrolled += 1
        else:
            plan.append(("identify", rng.randrange(pool_size)))
    return plan


def load(url: str, keys: list[str], admin: str, pool: list[tuple[str, bytes]], plan: list[tuple[str, int]],
         fresh: list[bytes], clients: int, server_pid: int) -> dict:
    """Run the mixed load; returns latencies, statuses and the enrolments acknowledged."""
    requests = len(plan)
    lock = threading.Lock()
    cursor = iter(enumerate(plan))
    admitted: dict[str, list[float]] = {"identify": [], "enrol": []}
    exchange: dict[str, list[float]] = {"identify": [], "enrol": []}
    statuses: dict[str, int] = {}
    failures: list[str] = []
    acknowledged: dict[str, int] = {}
    retry_waits: list[float] = []
    bar = tqdm(total=requests, desc=f"{clients} clients", unit="req")

    def client(index: int):
        with httpx.Client(base_url=url, timeout=600) as http:
            while True:
                with lock:
                    item = next(cursor, None)
                if item is None:
                    return
                n, (kind, which) = item
                name = f"load-{n:05d}"
                began = time.perf_counter()
                while True:  # the same request again after each 503, once its Retry-After has passed
                    started = time.perf_counter()
                    try:
                        if kind == "identify":
                            r = http.post("/v1/identify", headers={"X-API-Key": keys[index]},
                                          files={"image": ("probe.jpg", pool[which][1], "image/jpeg")})
                        else:
                            r = http.post("/v1/enroll", headers={"X-API-Key": admin}, data={"name": name},
                                          files=[("photos", (f"{name}.jpg", fresh[which], "image/jpeg"))])
                        status = r.status_code
                    except httpx.HTTPError as exc:
                        status, r = 0, None
                        with lock:
                            failures.append(f"{kind}: {type(exc).__name__}: {exc}")
                    elapsed = time.perf_counter() - started
                    with lock:
                        statuses[str(status)] = statuses.get(str(status), 0) + 1
                    if status == 503 and r is not None and "retry-after" in r.headers:
                        wait = float(r.headers["retry-after"])
                        with lock:
                            retry_waits.append(wait)
                        time.sleep(wait)
                        continue
                    break
                with lock:
                    if status == 200:
                        admitted[kind].append(elapsed)
                        exchange[kind].append(time.perf_counter() - began)
                        if kind == "enrol":
                            acknowledged[name] = r.json()["faces_added"]
                    elif r is not None:
                        failures.append(f"{kind}: {r.status_code} {r.text[:200]}")
                    bar.update(1)

    cpu_before, client_before = cpu_seconds(server_pid), time.process_time()
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    server_cpu, client_cpu = cpu_seconds(server_pid) - cpu_before, time.process_time() - client_before
    bar.close()
    return {"seconds": seconds, "admitted": admitted, "exchange": exchange, "statuses": statuses,
            "failures": failures, "acknowledged": acknowledged, "retry_after_s": retry_waits,
            "server_cpu_s": server_cpu, "client_cpu_s": client_cpu}


def run_config(label: str, args, pool, plan, fresh, processes: int, max_wait: float) -> dict:
    """One configuration: a fresh server and gallery, the load, the gallery read back after SIGTERM."""
    with tempfile.TemporaryDirectory(prefix="visage-load-") as tmp:
        folder = Path(tmp)
        store = KeyStore(folder / "server.db")
        keys = [store.create(f"client {i}") for i in range(args.clients)]
        admin = store.create("enroller", admin=True)
        store.close()
        print(f"-- {label}: {processes} process(es), max wait {max_wait:g} s", flush=True)
        server, url = start_server(folder, args.workers, processes, max_wait)
        try:
            # Seed the gallery so identifications have someone to find; load the models of every process.
            for identity, photo in pool[::2]:
                r = httpx.post(url + "/v1/enroll", headers={"X-API-Key": admin}, data={"name": identity},
                               files=[("photos", ("seed.jpg", photo, "image/jpeg"))], timeout=600)
                r.raise_for_status()
            for _ in range(4 * processes):  # new connections: spread over the processes
                httpx.post(url + "/v1/identify", headers={"X-API-Key": keys[0]}, timeout=600,
                           files={"image": ("probe.jpg", pool[1][1], "image/jpeg")})
            run = load(url, keys, admin, pool, plan, fresh, args.clients, server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            exit_code = server.wait(180)
        server_log = (folder / "server.log").read_text(errors="replace")
        with Gallery(folder / "gallery.db") as g:
            stored = {p.name: p.faces for p in g.people() if p.name.startswith("load-")}
        result = summarise(args, run, stored, exit_code, server_log)
        result.update({"config": label, "processes": processes, "max_wait_seconds": max_wait,
                       "model_use": [line.split("process ", 1)[-1] for line in server_log.splitlines()
                                     if "face models:" in line]})
        if label == args.configs[-1] and args.baseline:  # the in-process comparison, on the last gallery
            result["_baseline"] = in_process(folder / "gallery.db", pool, args.baseline)
    return result


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
    # face_recognition compares against its own 128-d encodings, as many as the gallery holds.
    own = [e for _, photo in pool for e in fr.face_encodings(fr.load_image_file(io.BytesIO(photo)))[:1]]
    known = [own[i % len(own)] for i in range(len(known))]
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
    from visage.server.settings import ServerSettings, usable_cores

    defaults = ServerSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--enrol", type=float, default=0.2, help="fraction of requests that enrol")
    parser.add_argument("--side", type=int, default=200, help="long side of the photos sent, px")
    parser.add_argument("--workers", type=int, default=2, help="the server's gallery connections per process")
    parser.add_argument("--configs", default="today,scaled",
                        help="comma-separated: today (1 process, no wait bound), scaled (the defaults)")
    parser.add_argument("--processes", type=int, default=None, help="processes of the scaled config (default: cores)")
    parser.add_argument("--max-wait", type=float, default=defaults.max_wait_seconds,
                        help="the scaled config's max wait for the models, s")
    parser.add_argument("--limit-n", type=int, default=60, help="in-process identifications timed for the limit")
    parser.add_argument("--baseline", type=int, default=60, help="in-process identifications for the comparison")
    parser.add_argument("--data", type=Path, default=DEV_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON to write (default: server_load.json in the results folder)")
    add_save_flag(parser)
    args = parser.parse_args()
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if args.out is None:
        args.out = results_dir(args.save) / "server_load.json"
    cores = usable_cores()
    if args.baseline:  # the peer, checked before minutes of load rather than after
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import face_recognition  # noqa: F401
        except (ImportError, SystemExit):
            parser.error('the in-process comparison needs face_recognition: pip install --no-deps '
                         'face_recognition==1.3.0 face_recognition_models "setuptools<81" (or --baseline 0)')

    pool = photos(args.data, args.side)
    plan = make_plan(args.requests, args.enrol, len(pool), args.seed)
    limit, fresh = measure_limit(pool, args.limit_n, cores, args.data, args.side,
                                 sum(1 for kind, _ in plan if kind == "enrol"), args.seed)
    print(json.dumps({"limit": limit}), flush=True)
    result: dict = {"limit": limit, "requests": args.requests, "clients": args.clients, "enrol_fraction": args.enrol,
                    "photo_side": args.side, "server_workers": args.workers,
                    "machine": {"cpus": cores, "python": platform.python_version()}}
    configs = {"today": (1, 0.0), "scaled": (args.processes or cores, args.max_wait)}
    baseline = None
    for label in args.configs:
        processes, max_wait = configs[label]
        run = run_config(label, args, pool, plan, fresh, processes, max_wait)
        baseline = run.pop("_baseline", None) or baseline
        run["throughput_pct_of_limit"] = round(100 * run["throughput_rps"] / limit["limit_rps"], 1)
        run["server_cpu_s_per_request_pct_of_in_process"] = round(
            100 * run["server_cpu_s_per_request"] / limit["cpu_s_per_identify"], 1)
        result[label] = run
        write(args.out, result)  # each configuration's numbers are kept even if a later one fails
    if baseline is not None:
        result.update(baseline)
        for label in args.configs:
            result[label]["ratio_service_p50_to_in_process_p50"] = round(
                result[label]["identify"]["p50_ms"] / baseline["visage_in_process"]["p50_ms"], 2)
        result["ratio_face_recognition_to_visage_in_process_p50"] = round(
            baseline["face_recognition_in_process"]["p50_ms"] / baseline["visage_in_process"]["p50_ms"], 2)
    result["machine"]["load_average_at_end"] = round(os.getloadavg()[0], 2)
    ok = all(result[label]["passed"] for label in args.configs)
    if "scaled" in result:
        scaled = result["scaled"]
        result["targets"] = {
            "throughput_at_least_85pct_of_limit": scaled["throughput_pct_of_limit"] >= 85,
            "identify_p99_admitted_under_2s": scaled["identify"].get("p99_ms", 0) < 2000,
            "no_5xx_but_deliberate_503": scaled["five_xx_or_dropped"] == 0,
            "no_lost_enrolments": not scaled["lost_enrolments"] and not scaled["miscounted_enrolments"],
        }
    write(args.out, result)
    keys = ("throughput_rps", "throughput_pct_of_limit", "identify", "enrol", "identify_with_retries",
            "statuses", "deliberate_503", "five_xx_or_dropped", "enrolments_acknowledged", "enrolments_stored",
            "lost_enrolments", "server_cpu_s_per_request")
    print(json.dumps({"limit": limit, **{label: {k: result[label][k] for k in keys} for label in args.configs},
                      "targets": result.get("targets")}, indent=2))
    print(("PASS" if ok else "FAIL") + ": no 5xx but the deliberate 503s, no lost enrolments; see " + str(args.out))
    return 0 if ok else 1


def write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def summarise(args, run: dict, stored: dict, exit_code: int, server_log: str) -> dict:
    """One configuration's outcome as a JSON-ready dict, with whether it passed."""
    lost = sorted(set(run["acknowledged"]) - set(stored))
    miscounted = sorted(n for n in run["acknowledged"] if n in stored and stored[n] != run["acknowledged"][n])
    unexpected = sorted(set(stored) - set(run["acknowledged"]))
    deliberate = run["statuses"].get("503", 0)
    five_xx = sum(v for k, v in run["statuses"].items() if (k.startswith("5") and k != "503") or k == "0")
    answered = len(run["admitted"]["identify"]) + len(run["admitted"]["enrol"])
    result = {
        "seconds": round(run["seconds"], 1), "answered": answered,
        "throughput_rps": round(answered / run["seconds"], 2), "statuses": run["statuses"],
        "deliberate_503": deliberate, "five_xx_or_dropped": five_xx, "other_failures": run["failures"][:20],
        "retry_after_s": percentiles(run["retry_after_s"]) if run["retry_after_s"] else None,
        "identify": percentiles(run["admitted"]["identify"]), "enrol": percentiles(run["admitted"]["enrol"]),
        "identify_with_retries": percentiles(run["exchange"]["identify"]),
        "enrol_with_retries": percentiles(run["exchange"]["enrol"]),
        "enrolments_acknowledged": len(run["acknowledged"]), "enrolments_stored": len(stored),
        "lost_enrolments": lost, "miscounted_enrolments": miscounted, "unexpected_people": unexpected,
        "server_cpu_s": round(run["server_cpu_s"], 1),
        "server_cpu_s_per_request": round(run["server_cpu_s"] / max(1, answered), 4),
        # The clients (this process) share the machine: their CPU is not the server's to use.
        "client_cpu_s": round(run["client_cpu_s"], 1),
        "cpu_busy_pct_of_machine": round(100 * (run["server_cpu_s"] + run["client_cpu_s"])
                                         / (run["seconds"] * (os.cpu_count() or 1)), 1),
        "server_exit_code": exit_code,
    }
    if run["failures"]:
        result["server_log_tail"] = server_log[-3000:]
    result["passed"] = (five_xx == 0 and not run["failures"] and not lost and not miscounted and not unexpected
                        and answered == args.requests)
    return result


if __name__ == "__main__":
    sys.exit(main())
