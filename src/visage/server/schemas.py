"""Typed request and response bodies of the REST API (they make the OpenAPI document at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Error(BaseModel):
    """Every 4xx and 5xx answer: a message meant for a person."""

    detail: str = Field(..., examples=["photo.jpg: not an image file, or a format visage cannot read"])


class Box(BaseModel):
    left: int
    top: int
    right: int
    bottom: int


class Landmarks(BaseModel):
    five: list[list[float]] = Field(..., alias="5", description="5 points (x, y): eye corners and nose")
    sixty_eight: list[list[float]] | None = Field(None, alias="68", description="68 points (x, y), when asked for")


class Face(BaseModel):
    box: Box
    score: float = Field(..., description="the detector's confidence; higher is surer")
    landmarks: Landmarks


class DetectResponse(BaseModel):
    image: ImageInfo
    faces: list[Face]


class ImageInfo(BaseModel):
    width: int
    height: int
    sha256: str = Field(..., description="hash of the uploaded bytes")


class Encoding(Face):
    encoder: str = Field(..., description="the encoder, as the server's settings name it (or the gallery's own)")
    embedding: str = Field(..., description="the embedding space the encoding belongs to")
    encoding: list[float]


class EncodeResponse(BaseModel):
    image: ImageInfo
    faces: list[Encoding]


class VerifyResponse(BaseModel):
    distance: float
    threshold: float
    same: bool
    probability: float = Field(..., description="calibrated probability that the faces are the same person")
    encoder: str
    embedding: str


class Candidate(BaseModel):
    name: str
    distance: float
    probability: float


class Identification(BaseModel):
    box: Box | None
    name: str | None = Field(..., description="the enrolled person, or null when unknown (or not live)")
    distance: float | None
    threshold: float
    live: bool | None = Field(None, description="liveness verdict for this face; null when not checked")
    candidates: list[Candidate]


class Liveness(BaseModel):
    source: str
    decision: Literal["live", "attack", "insufficient evidence"]
    live: bool | None
    score: float | None
    threshold: float
    reason: str
    evidence: dict[str, Any]


class Refused(Error):
    """A 403 from a liveness check: the message, and the verdict that explains it."""

    liveness: Liveness | None = Field(None, description="the liveness verdict that refused the face")


class IdentifyResponse(BaseModel):
    image: ImageInfo
    encoder: str = Field(..., description="the gallery's encoder")
    faces: list[Identification]


class Skipped(BaseModel):
    photo: str
    reason: str


class EnrollResponse(BaseModel):
    name: str
    added: dict[str, int]
    faces_added: int
    skipped: list[Skipped]


class Person(BaseModel):
    name: str
    faces: int
    created: float


class StoredFace(BaseModel):
    id: int
    person: str
    source: str
    sha256: str
    box: Box | None
    quality: float
    added: float
    thumbnail: bool = Field(..., description="a thumbnail is stored: GET /v1/faces/{id}/thumbnail (admin key)")


class PersonDetail(Person):
    stored_faces: list[StoredFace]


class RenameRequest(BaseModel):
    new_name: str = Field(..., min_length=1, max_length=200)


class RemoveResponse(BaseModel):
    name: str
    faces_removed: int


class FaceRemoved(BaseModel):
    id: int
    person: str = Field(..., description="whose face it was")
    faces_left: int = Field(..., description="faces the person still has; 0: the person is removed too")


class KeyIdentity(BaseModel):
    """The API key a request was made with (never the secret)."""

    id: str
    name: str
    admin: bool = Field(..., description="may enrol, rename and remove people and faces, and read the audit log")


class Challenge(BaseModel):
    id: str
    actions: list[Literal["turn_left", "turn_right", "blink"]] = Field(
        ..., description="what the person must do, in order; turns are the person's own left and right")
    expires_in: float
    max_frames: int


class ChallengeFrames(BaseModel):
    id: str
    frames: int = Field(..., description="frames received so far")
    max_frames: int


class ChallengeResult(BaseModel):
    id: str
    actions: list[str]
    passed: bool = Field(..., description="the actions were done in the asked order")
    admitted: bool = Field(..., description="live and passed: only then is the face named")
    liveness: Liveness
    frame: int | None = Field(None, description="index of the frame the faces were identified in")
    frame_size: list[int] | None = Field(None, description="[width, height] of that frame")
    faces: list[Identification]


class Job(BaseModel):
    id: str
    kind: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float = Field(..., ge=0, le=1)
    message: str
    created: float
    started: float | None
    finished: float | None
    error: str | None
    result_url: str | None = Field(None, description="where to GET the result once done")


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class Healthz(BaseModel):
    status: Literal["ok"]


class AuditEntry(BaseModel):
    id: int
    time: float
    key_id: str | None
    key_name: str | None
    client: str | None
    method: str
    path: str
    status: int
    ms: float
    summary: dict[str, Any]


DetectResponse.model_rebuild()
