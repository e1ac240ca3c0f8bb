"""A user mistake on the page is a visible banner, never a traceback: the decorator every page action wears (the
controller's and its panel mixins')."""
from __future__ import annotations

import functools

from AutoSegCore.errors import AutoSegError


def user_action(method):
    """Page actions: a user mistake becomes the visible error banner (message + hint), never a traceback."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        self.state.error = ""
        try:
            return method(self, *args, **kwargs)
        except AutoSegError as exc:
            self.state.error = f"{exc.message}" + (f" — {exc.hint}" if exc.hint else "")
        except MemoryError:     # the page's process survives an allocation that did not fit; the banner says so
            self.state.error = ("out of memory reading or showing the data — free memory, use smaller data, or set "
                                "AUTOSEG_MAX_IMAGE_GB lower so oversized volumes are refused before they are read")
        return None

    return wrapper
