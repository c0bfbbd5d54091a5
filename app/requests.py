"""A request class that keeps uploaded files in memory.

Werkzeug spools multipart files larger than 500 KB to a temporary file on disk; uploads here are
capped by ``MAX_CONTENT_LENGTH`` (a little over 1 MB), so they stay in a ``BytesIO`` and are never
written to disk.
"""
from __future__ import annotations

import io
from typing import IO

from flask import Request


class InMemoryRequest(Request):
    """``flask.Request`` whose file parts are buffered in memory."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        return io.BytesIO()
