"""The optional parts of visage, and the pip extra that installs each.

``pip install visage`` installs the face pipeline: detection, encoders, verification, the
gallery on SQLite and liveness. The service and the Milvus backend are extras, imported only by
the commands that use them; a missing one is named by :func:`missing_extra`.
"""

from __future__ import annotations

from .errors import VisageError

#: Top-level module → the extra that installs it.
EXTRA_OF_MODULE = {
    "fastapi": "server", "fastapi_offline": "server", "uvicorn": "server", "starlette": "server",
    "multipart": "server", "python_multipart": "server", "pydantic_settings": "server", "cryptography": "server",
    "pydantic": "server", "anyio": "server",  # fastapi's own dependencies, which the service imports too
    "pymilvus": "milvus", "milvus_lite": "milvus",
}
#: What each extra adds, as `pip install` help says it.
EXTRAS = {"server": "the REST service and its web page (visage serve)",
          "milvus": "the Milvus gallery backend (--gallery milvus://... or milvus-lite:FILE)"}


class MissingExtra(VisageError):
    """A command needs an optional part of visage that is not installed."""


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The :class:`MissingExtra` saying what to install when ``exc`` is a missing optional module, else None."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return MissingExtra(f"this needs {EXTRAS[extra]}, which is not installed (no module {module!r}); "
                        f"install it with: pip install 'visage[{extra}]'")
