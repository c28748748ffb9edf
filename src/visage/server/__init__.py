"""visage as a service: a FastAPI app over the gallery, with a web page (``visage serve``).

::

    from visage.server import ServerSettings, create_app
    app = create_app(ServerSettings(gallery="people.db"))

See docs/service.md.
"""

from .app import create_app
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
