"""The REST endpoints, under ``/v1``. Each is a thin layer over the library.

Endpoints that compute are plain functions, which FastAPI runs on its thread pool, so slow face
work never blocks the event loop. Uploads are decoded with :func:`visage.media.images.load_image` and
the server's pixel limit; what each request did is summarised for the audit log in
``request.state.audit`` (names and counts, never images or encodings).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from .. import __version__
from ..errors import ImageError, VisageError
from ..media import video
from ..media.images import Image, load_image
from . import schemas
from .auth import Principal
from .service import Overloaded, Service

router = APIRouter()
_bearer = HTTPBearer(auto_error=False, description="an API key made by `visage serve --create-key`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, in a header of its own")

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The error answers each route may give, for the OpenAPI schema.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.Error}, 401: {"model": schemas.Error}, 413: {"model": schemas.Error},
    422: {"model": schemas.Error}, 429: {"model": schemas.Error}, 503: {"model": schemas.Error}}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 403: {"model": schemas.Error}}


def service(request: Request) -> Service:
    return request.app.state.service


def caller(request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
           header: Annotated[str | None, Depends(_header)]) -> Principal:
    """The principal behind the request's API key; 401 without a valid key, 429 over the rate limit."""
    checked = getattr(request.state, "principal", None)
    if checked is not None:
        return checked  # auth.RequireKey checked the key and spent its rate before the body was read
    svc = service(request)
    key = header or (bearer.credentials if bearer else None)
    if not key:
        raise HTTPException(401, "an API key is needed: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    who = svc.keys.authenticate(key)
    if who is None:
        raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = who
    wait = svc.limiter.take(who.key_id)
    if wait:
        raise HTTPException(429, f"rate limit reached for key {who.name!r} "
                                 f"({svc.settings.rate_per_minute:g} requests a minute); retry in {wait:.1f} s",
                            headers={"Retry-After": str(math.ceil(wait))})
    return who


def admin(who: Annotated[Principal, Depends(caller)]) -> Principal:
    """Like :func:`caller`, and 403 unless the key is an admin key."""
    if not who.admin:
        raise HTTPException(403, f"key {who.name!r} is not an admin key; enrolling, renaming and removing "
                                 "people or faces, seeing face thumbnails and reading the audit log need one")
    return who


Caller = Annotated[Principal, Depends(caller)]
Admin = Annotated[Principal, Depends(admin)]


def upload_name(upload: UploadFile, fallback: str = "upload") -> str:
    """A safe label for an upload in messages: its base name, printable, at most 80 characters."""
    name = os.path.basename((upload.filename or "").replace("\\", "/"))
    name = re.sub(r"[^\w.\- ()+@]", "_", name)[:80]
    return name or fallback


def read_image(svc: Service, upload: UploadFile, fallback: str = "upload") -> Image:
    """Decode an uploaded image under the server's pixel limit (ImageError → 400)."""
    return load_image(upload.file.read(), name=upload_name(upload, fallback), max_pixels=svc.settings.max_pixels)


def image_info(img: Image) -> dict:
    return {"width": img.width, "height": img.height, "sha256": img.sha256}


def note(request: Request, **summary) -> None:
    """Record what a request did for the audit log (no biometric data)."""
    request.state.audit = summary


# -- health ---------------------------------------------------------------------------------------

@router.get("/health", response_model=schemas.Health, tags=["server"])
def health():
    """Liveness of the server itself (no key needed)."""
    return {"status": "ok", "version": __version__}


@router.get("/healthz", response_model=schemas.Healthz, tags=["server"])
def healthz():
    """For load balancers and orchestrators: 200 while this process serves. No key, and no details
    (no version, no paths), so it tells an outsider nothing."""
    return {"status": "ok"}


@router.get("/metrics", response_class=Response, responses={**ADMIN_ERRORS, 200: {"content": {METRICS_TYPE: {}}}},
            tags=["server"])
def metrics(request: Request, who: Admin):
    """Prometheus text format (admin key): requests by route, method and status, latency
    histograms by route, the face models' queue depth, busy flag and 503 refusals, summed over the
    server's processes."""
    from .metrics import render

    return Response(render(service(request).metrics.collect()), media_type=METRICS_TYPE)


@router.get("/v1/key", response_model=schemas.KeyIdentity, responses=ERRORS, tags=["server"])
def key_identity(request: Request, who: Caller):
    """The key this request was made with: its id, its name and whether it is an admin key."""
    return {"id": who.key_id, "name": who.name, "admin": who.admin}


# -- faces ----------------------------------------------------------------------------------------

@router.post("/v1/detect", response_model=schemas.DetectResponse, responses=ERRORS, tags=["faces"])
def detect(request: Request, who: Caller, image: Annotated[UploadFile, File(description="a photo")],
           landmarks68: Annotated[bool, Form()] = False):
    """Find every face in the photo: boxes, detector scores and landmarks, largest face first."""
    from ..api import detect as find

    svc = service(request)
    img = read_image(svc, image)
    with svc.compute.turn("detect"):
        faces = find(img, detector=svc.settings.detector, landmarks68=landmarks68)
    note(request, faces=len(faces))
    return {"image": image_info(img), "faces": [f.to_dict() for f in faces]}


@router.post("/v1/encode", response_model=schemas.EncodeResponse, responses=ERRORS, tags=["faces"])
def encode(request: Request, who: Caller, image: Annotated[UploadFile, File(description="a photo")],
           which: Annotated[Literal["all", "largest", "one"], Form()] = "all"):
    """Detect faces and return each one's encoding f(x). ``which="one"`` refuses (422) unless there is exactly one face."""
    from ..api import encode as encode_faces

    svc = service(request)
    img = read_image(svc, image)
    with svc.galleries.borrow() as gallery:
        encoder = gallery.encoder_key  # the server encodes with its gallery's encoder
    with svc.compute.turn("encode"):
        found = encode_faces(img, which=which, detector=svc.settings.detector, encoder=encoder)
    note(request, faces=len(found))
    return {"image": image_info(img),
            "faces": [{**e.to_dict(), "encoder": encoder, "embedding": e.encoder} for e in found]}


@router.post("/v1/verify", response_model=schemas.VerifyResponse, responses=ERRORS, tags=["faces"])
def verify(request: Request, who: Caller, a: Annotated[UploadFile, File(description="first photo")],
           b: Annotated[UploadFile, File(description="second photo")],
           threshold: Annotated[float | None, Form(gt=0, allow_inf_nan=False)] = None):
    """Are the largest faces in the two photos the same person? (422 when a photo has no face)"""
    from ..api import verify as same_person

    svc = service(request)
    first, second = read_image(svc, a, "a"), read_image(svc, b, "b")
    with svc.galleries.borrow() as gallery:
        encoder, calibration = gallery.encoder_key, gallery.calibration()
    with svc.compute.turn("verify"):
        result = same_person(first, second, threshold=threshold, calibration=calibration,
                             detector=svc.settings.detector, encoder=encoder)
    note(request, same=result.same)
    return result.to_dict()


# -- gallery --------------------------------------------------------------------------------------

@router.post("/v1/enroll", response_model=schemas.EnrollResponse, responses=ADMIN_ERRORS, tags=["gallery"])
def enroll(request: Request, who: Admin, name: Annotated[str, Form(min_length=1, max_length=200)],
           photos: Annotated[list[UploadFile], File(description="photos of the person, one face each")]):
    """Enrol ``name`` from photos with one face each (admin key). Photos that cannot be used are
    skipped and listed; the faces that can are committed together, in one transaction."""
    svc = service(request)
    if len(photos) > svc.settings.max_photos:
        raise VisageError(f"{len(photos)} photos sent; an enrolment takes at most {svc.settings.max_photos}")
    images, skipped = [], []
    for i, photo in enumerate(photos):
        try:
            images.append(read_image(svc, photo, f"photo {i + 1}"))
        except ImageError as exc:
            skipped.append((upload_name(photo, f"photo {i + 1}"), str(exc)))
    report = None
    if images:
        # The turn is taken first: a refused enrolment (503) has written nothing and may be sent again.
        with svc.compute.turn("enroll", len(images)), svc.galleries.borrow() as gallery:
            report = gallery.enroll(name, images)
    added = report.added if report else {}
    skipped += report.skipped if report else []
    if not sum(added.values()):
        reasons = "; ".join(f"{p}: {r}" for p, r in skipped) or "no photos"
        note(request, person=name, faces_added=0, skipped=len(skipped))
        raise VisageError(f"nothing enrolled for {name.strip()!r}: {reasons}")
    note(request, person=name, faces_added=sum(added.values()), skipped=len(skipped))
    return {"name": name.strip(), "added": added, "faces_added": sum(added.values()),
            "skipped": [{"photo": p, "reason": r} for p, r in skipped]}


@router.post("/v1/identify", response_model=schemas.IdentifyResponse,
             responses={**ERRORS, 403: {"model": schemas.Refused}}, tags=["gallery"])
def identify(request: Request, who: Caller, image: Annotated[UploadFile, File(description="a photo")],
             top: Annotated[int, Form(ge=1, le=50)] = 5,
             threshold: Annotated[float | None, Form(gt=0, allow_inf_nan=False)] = None,
             require_live: Annotated[bool, Form(description="the largest face must pass the passive liveness "
                                                            "check first (else 403 with the verdict); only "
                                                            "that face gets a name")] = False):
    """Who is each face in the photo? Names come from the gallery; ``null`` means unknown."""
    svc = service(request)
    img = read_image(svc, image)
    if require_live:
        with svc.compute.turn("identify-live"), svc.galleries.borrow() as gallery:
            found = gallery.identify(img, top=top, threshold=threshold, require_live=True)
            encoder = gallery.encoder_key
    else:
        with svc.galleries.borrow() as gallery:
            gallery.check_encoder()
            gallery.calibration()  # a missing or foreign calibration is refused before any detection
            encoder = gallery.encoder_key
        # Detected and encoded in one turn with the identifications queued behind it (the encoder
        # costs much less per face in a batch); matched outside the turn, on this request's gallery.
        encoded = svc.compute.together("identify", img, lambda images: encode_photos(svc, encoder, images),
                                       max_batch=8)
        with svc.galleries.borrow() as gallery:
            found = gallery.name_faces(encoded, photo=img.name, sha256=img.sha256, top=top, threshold=threshold)
    note(request, faces=len(found), names=[f.name for f in found if f.name])
    return {"image": image_info(img), "encoder": encoder, "faces": [f.to_dict() for f in found]}


def encode_photos(svc: Service, encoder: str, images: list[Image]) -> list:
    """Each photo's faces and encodings, the chips of all photos through the encoder at once; a
    photo that fails gets its exception in its place (it fails only its own request)."""
    from ..api import detect as find
    from ..pipeline import encode_batch

    out: list = [None] * len(images)
    found = []
    for i, img in enumerate(images):
        try:
            found.append((i, find(img, detector=svc.settings.detector, landmarks68=False)))
        except Exception as exc:  # noqa: BLE001 - handed to that photo's request, which raises it
            out[i] = exc
    try:
        for (i, _), encoded in zip(found, encode_batch([images[i] for i, _ in found], faces=[f for _, f in found],
                                                       encoder=encoder)):
            out[i] = encoded
    except Exception:  # noqa: BLE001 - find which photo fails: one by one
        for i, faces in found:
            try:
                out[i] = encode_batch([images[i]], faces=[faces], encoder=encoder)[0]
            except Exception as exc:  # noqa: BLE001
                out[i] = exc
    return out


@router.get("/v1/people", response_model=list[schemas.Person], responses=ERRORS, tags=["gallery"])
def people(request: Request, who: Caller):
    """Everyone enrolled, by name, with their number of faces."""
    with service(request).galleries.borrow() as gallery:
        found = gallery.people()
    note(request, people=len(found))
    return [p.to_dict() for p in found]


@router.get("/v1/people/{name:path}", response_model=schemas.PersonDetail,
            responses={**ERRORS, 404: {"model": schemas.Error}},
            tags=["gallery"])
def person(request: Request, who: Caller, name: str):
    """One person and their stored faces (where each came from; not the encodings)."""
    with service(request).galleries.borrow() as gallery:
        faces = gallery.faces(name)
        entry = next(p for p in gallery.people() if p.name == name)
    note(request, person=name)
    return {**entry.to_dict(), "stored_faces": [f.to_dict() for f in faces]}


@router.patch("/v1/people/{name:path}", response_model=schemas.Person,
              responses={**ADMIN_ERRORS, 404: {"model": schemas.Error}, 409: {"model": schemas.Error}},
              tags=["gallery"])
def rename(request: Request, who: Admin, name: str, body: schemas.RenameRequest):
    """Rename a person (admin key); 409 when the new name is taken."""
    with service(request).galleries.borrow() as gallery:
        gallery.rename(name, body.new_name)
        entry = next(p for p in gallery.people() if p.name == body.new_name.strip())
    note(request, person=name, new_name=entry.name)
    return entry.to_dict()


@router.delete("/v1/people/{name:path}", response_model=schemas.RemoveResponse,
               responses={**ADMIN_ERRORS, 404: {"model": schemas.Error}}, tags=["gallery"])
def remove(request: Request, who: Admin, name: str):
    """Forget a person and their faces (admin key)."""
    with service(request).galleries.borrow() as gallery:
        removed = gallery.remove(name)
    note(request, person=name, faces_removed=removed)
    return {"name": name, "faces_removed": removed}


@router.get("/v1/faces/{face_id}/thumbnail", response_class=Response,
            responses={**ADMIN_ERRORS, 404: {"model": schemas.Error}, 200: {"content": {"image/jpeg": {}}}},
            tags=["gallery"])
def face_thumbnail(request: Request, who: Admin, face_id: int):
    """The small JPEG of a stored face, kept at enrolment (admin key: it is a picture of a face).
    404 for an unknown face, or for one enrolled before thumbnails were kept."""
    with service(request).galleries.borrow() as gallery:
        jpeg = gallery.thumbnail(face_id)
    if jpeg is None:
        raise HTTPException(404, f"face {face_id} has no thumbnail (enrolled before thumbnails were kept)")
    note(request, face=face_id)
    # Not kept in the browser's disk cache: it is biometric data.
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.delete("/v1/faces/{face_id}", response_model=schemas.FaceRemoved,
               responses={**ADMIN_ERRORS, 404: {"model": schemas.Error}}, tags=["gallery"])
def remove_face(request: Request, who: Admin, face_id: int):
    """Forget one stored face (admin key); removing a person's last face removes the person."""
    with service(request).galleries.borrow() as gallery:
        person_name, left = gallery.remove_face(face_id)
    note(request, person=person_name, face=face_id, faces_left=left)
    return {"id": face_id, "person": person_name, "faces_left": left}


@router.get("/v1/audit", response_model=list[schemas.AuditEntry], responses=ADMIN_ERRORS, tags=["server"])
def audit(request: Request, who: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
          key_id: Annotated[str | None, Query(max_length=16)] = None):
    """The newest audit entries (admin key): who asked what, when, and the outcome."""
    return service(request).audit.latest(limit, key_id)


# -- liveness -------------------------------------------------------------------------------------

VIDEO_TYPES = ("video/",)


@router.post("/v1/liveness", response_model=schemas.Liveness, responses=ERRORS, tags=["liveness"])
def liveness_check(request: Request, who: Caller,
                   media: Annotated[UploadFile, File(description="a photo, or a short video (mp4, webm, avi, mov...)")],
                   challenge: Annotated[str | None, Form(description="for a video: the actions the person was asked "
                                                                     "to do, comma-separated, in order")] = None):
    """Live face or presentation attack? A photo gets the passive check; a video adds blinks,
    planarity and, with ``challenge``, the head-turn challenge."""
    from .. import liveness
    from ..liveness.active import CHALLENGE_ACTIONS

    svc = service(request)
    actions = [a.strip() for a in challenge.split(",") if a.strip()] if challenge else None
    if actions and any(a not in CHALLENGE_ACTIONS for a in actions):
        raise VisageError(f"challenge actions must be among {', '.join(CHALLENGE_ACTIONS)}")
    name = upload_name(media)
    clip = video.is_video(name) or (media.content_type or "").startswith(VIDEO_TYPES)
    if clip:
        result = _video_liveness(svc, media, name, actions)
    else:
        if actions:
            raise VisageError("a challenge needs a video, not a photo")
        img = read_image(svc, media)
        with svc.compute.turn("liveness"):
            result = liveness.check(img, detector=svc.settings.detector)
    note(request, decision=result.decision, video=clip)
    return result.to_dict()


def _video_liveness(svc: Service, media: UploadFile, name: str, actions):
    from .. import liveness

    suffix = Path(name).suffix.lower() if video.is_video(name) else ".mp4"
    with tempfile.TemporaryDirectory(prefix="visage-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(media.file.read())
        info = video.probe(path, name=name)
        if info.pixels > svc.settings.max_pixels:
            raise ImageError(f"{name}: video frames are {info.width}×{info.height}, over the "
                             f"{svc.settings.max_pixels / 1e6:.0f} MP limit")
        frames, fps = video.read_frames(path, max_frames=svc.settings.max_frames,
                                        max_side=svc.settings.max_frame_side, name=name)
        with svc.compute.turn("liveness-video", len(frames)):
            result = liveness.check(frames, challenge=actions, fps=fps, detector=svc.settings.detector)
    return _named(result, name)


def _named(result, source: str):
    from dataclasses import replace

    return replace(result, source=source)


@router.post("/v1/liveness/challenges", response_model=schemas.Challenge, responses=ERRORS, tags=["liveness"])
def new_challenge(request: Request, who: Caller):
    """Draw a random challenge (for example turn left, blink, turn right) for a live check over video.

    Then send the camera's frames to ``/frames`` as they are recorded, and ask ``/verdict``."""
    svc = service(request)
    challenge = svc.challenges.create(who.key_id)
    note(request, challenge=challenge.id)
    return {"id": challenge.id, "actions": challenge.actions, "expires_in": svc.challenges.remaining(challenge),
            "max_frames": svc.challenges.max_frames}


@router.post("/v1/liveness/challenges/{challenge_id}/frames", response_model=schemas.ChallengeFrames,
             responses={**ERRORS, 404: {"model": schemas.Error}, 409: {"model": schemas.Error}}, tags=["liveness"])
def challenge_frames(request: Request, who: Caller, challenge_id: str,
                     frames: Annotated[list[UploadFile], File(description="JPEG or PNG frames, in order")],
                     times: Annotated[str | None, Form(description="each frame's capture time in ms, "
                                                                   "comma-separated")] = None):
    """Add frames to an open challenge (at most ``max_frames`` in all)."""
    svc = service(request)
    challenge = svc.challenges.get(challenge_id, who.key_id)
    from ..liveness.active import parse_frame_times

    stamps = parse_frame_times(times, len(frames))
    blobs = []
    for i, frame in enumerate(frames):
        data = frame.file.read()
        img = load_image(data, name=f"frame {len(challenge.frames) + i}", max_pixels=svc.settings.max_pixels)
        if max(img.width, img.height) > 4 * svc.settings.max_frame_side:
            raise ImageError(f"{img.name}: {img.width}×{img.height} is larger than a frame needs to be; "
                             f"send at most {svc.settings.max_frame_side} px on the long side")
        blobs.append(data)
    if not stamps:
        start = challenge.times[-1] + 1000 / 30 if challenge.times else 0.0
        stamps = [start + i * 1000 / 30 for i in range(len(blobs))]
    count = svc.challenges.add_frames(challenge, blobs, stamps)
    note(request, challenge=challenge.id, frames=count)
    return {"id": challenge.id, "frames": count, "max_frames": svc.challenges.max_frames}


@router.post("/v1/liveness/challenges/{challenge_id}/verdict", response_model=schemas.ChallengeResult,
             responses={**ERRORS, 404: {"model": schemas.Error}, 409: {"model": schemas.Error}}, tags=["liveness"])
def challenge_verdict(request: Request, who: Caller, challenge_id: str,
                      identify: Annotated[bool, Query(description="also identify the face, named only if live")] = True):
    """Judge the frames against the challenge; with ``identify``, say who the live face is.

    ``admitted`` is true only when the liveness check says live *and* the actions were done in the
    asked order; only then is the face named. A challenge is answered once: afterwards its id is unknown."""
    from .. import liveness

    svc = service(request)
    challenge = svc.challenges.get(challenge_id, who.key_id)
    svc.challenges.claim(challenge)
    refused = False
    try:
        if not challenge.frames:
            raise VisageError("no frames were sent for this challenge")
        pixels = [_frame(svc, blob, i) for i, blob in enumerate(challenge.frames)]
        with svc.compute.turn("liveness-video", len(pixels)):
            result = liveness.check(pixels, challenge=challenge.actions, fps=challenge.fps(),
                                    detector=svc.settings.detector)
        passed = bool((result.evidence.get("challenge") or {}).get("passed"))
        let_in = liveness.admitted(result)
        faces, frame, size = [], None, None
        if identify:
            frame = _best_frame(result, len(pixels))
            if frame is not None:
                size = [int(pixels[frame].shape[1]), int(pixels[frame].shape[0])]
                with svc.compute.turn("identify"), svc.galleries.borrow() as gallery:
                    found = gallery.identify(pixels[frame])[:1]
                faces = [(f if let_in else f.withheld()).to_dict() for f in found]
    except Overloaded:
        refused = True  # not judged (the server was at capacity): the client may ask for the verdict again
        raise
    finally:
        if refused:
            svc.challenges.release(challenge)
        else:
            svc.challenges.close(challenge)
    note(request, challenge=challenge.id, decision=result.decision, passed=passed, admitted=let_in,
         names=[f["name"] for f in faces if f["name"]])
    return {"id": challenge.id, "actions": challenge.actions, "passed": passed, "admitted": let_in,
            "liveness": _named(result, "challenge").to_dict(), "frame": frame, "frame_size": size, "faces": faces}


def _frame(svc: Service, blob: bytes, index: int):
    import cv2

    pixels = load_image(blob, name=f"frame {index}", max_pixels=svc.settings.max_pixels).pixels
    scale = svc.settings.max_frame_side / max(pixels.shape[:2])
    if scale < 1:
        pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return pixels


def _best_frame(result, count: int) -> int | None:
    """The frame to identify in: the last of the passive check's frames (faces were found there)."""
    used = (result.evidence.get("passive") or {}).get("frames") or []
    if used:
        return int(used[len(used) // 2])
    return count // 2 if count else None


# -- style transfer -------------------------------------------------------------------------------

@router.post("/v1/style", response_model=schemas.Job, status_code=202,
             responses={**ERRORS, 503: {"model": schemas.Error}}, tags=["style"])
def style(request: Request, who: Caller, content: Annotated[UploadFile, File(description="the photo to paint")],
          style_image: Annotated[UploadFile, File(alias="style", description="the painting whose style to use")],
          size: Annotated[int | None, Form(ge=16, description="long side of the result in pixels")] = None,
          steps: Annotated[int | None, Form(ge=1, le=1000, description="optimisation steps at the coarsest size")] = None,
          style_weight: Annotated[float | None, Form(gt=0, description="β (default: the library's)")] = None,
          preserve_color: Annotated[bool, Form()] = False):
    """Start a style-transfer job (Gatys optimisation) and return it at once (202).

    Poll ``/v1/jobs/{id}`` for progress and fetch ``/v1/jobs/{id}/result`` (PNG) when done."""
    from ..style import StyleSettings

    svc = service(request)
    size = size or svc.settings.style_size
    if size > svc.settings.max_style_size:
        raise VisageError(f"size {size} is over this server's limit of {svc.settings.max_style_size} px")
    content_img = read_image(svc, content, "content")
    style_img = read_image(svc, style_image, "style")
    settings = StyleSettings(size=size, steps=steps or svc.settings.style_steps, preserve_color=preserve_color,
                             coarse_size=min(size, 256), threads=svc.settings.threads)
    if style_weight is not None:
        settings.style_weight = style_weight
    settings.validate()
    job = svc.jobs.submit("style", who.key_id, lambda job: _run_style(job, content_img, style_img, settings))
    note(request, job=job.id, size=size, steps=settings.steps)
    return _job_view(job)


def _run_style(job, content_img: Image, style_img: Image, settings) -> tuple[bytes, str]:
    from ..style import stylize

    total = sum(settings.level_steps(len(settings.level_sizes())))
    done = 0

    def step(entry: dict) -> None:
        nonlocal done
        done += 1
        job.report(done / total, f"step {done} of {total} at {entry['size']} px")

    job.report(0.0, "loading the network")
    result = stylize(content_img, style_img, settings, progress=False, callback=step)
    with tempfile.TemporaryDirectory(prefix="visage-style-") as folder:
        path = result.save(Path(folder) / "result.png")
        return path.read_bytes(), "image/png"


def _job_view(job) -> dict:
    return {**job.to_dict(), "result_url": f"/v1/jobs/{job.id}/result" if job.status == "done" else None}


def _own_job(request: Request, who: Principal, job_id: str):
    job = service(request).jobs.get(job_id)
    if job is None or (job.owner != who.key_id and not who.admin):
        raise HTTPException(404, f"no job {job_id!r} (unknown, expired, or made with another key)")
    return job


@router.get("/v1/jobs/{job_id}", response_model=schemas.Job, responses={**ERRORS, 404: {"model": schemas.Error}},
            tags=["style"])
def job_status(request: Request, who: Caller, job_id: str):
    """A job's status and progress."""
    return _job_view(_own_job(request, who, job_id))


@router.get("/v1/jobs/{job_id}/result", responses={**ERRORS, 404: {"model": schemas.Error},
                                                   409: {"model": schemas.Error},
                                                   200: {"content": {"image/png": {}}}}, tags=["style"])
def job_result(request: Request, who: Caller, job_id: str):
    """The finished job's result (a PNG for style transfer); 409 while it is not done."""
    job = _own_job(request, who, job_id)
    if job.status != "done":
        why = f": {job.error}" if job.error else ""
        raise HTTPException(409, f"job {job_id} is {job.status}{why}")
    note(request, job=job.id)
    return Response(job.result, media_type=job.media_type)


@router.delete("/v1/jobs/{job_id}", response_model=schemas.Job, responses={**ERRORS, 404: {"model": schemas.Error}},
               tags=["style"])
def job_cancel(request: Request, who: Caller, job_id: str):
    """Cancel a queued or running job."""
    _own_job(request, who, job_id)
    job = service(request).jobs.cancel(job_id)
    note(request, job=job_id)
    return _job_view(job)
