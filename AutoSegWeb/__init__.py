"""AutoSegSearch in the browser: a trame + Vuetify page with trame-slicer's slice/3D views over the Slicer
module's own logic (see docs/web.md). ``serve(data, work, host, port)`` runs it; ``autoseg gui`` wraps it."""
from __future__ import annotations

from AutoSegWeb.server import serve

__all__ = ["serve"]
