"""What a Gradio server (`p2m ui`, `p2m serve`) may be started with, checked before anything listens.

A public share link must not show a session's data to whoever finds it, so `share` needs `auth`; the
port must be free; uploads are capped at the same limit as everywhere else (tools/uploads.py).
"""

from __future__ import annotations

import socket
from typing import Any

from p2m.errors import ConfigError
from p2m.tools.uploads import max_upload_mb

__all__ = ["parse_auth", "check_port", "launch_kwargs"]


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """`USER:PASSWORD` (the password may hold colons) as gradio's `auth` pair; None when not given.

    Raises:
        ConfigError: no colon, or an empty user or password.
    """
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user.strip() or not password:
        raise ConfigError("--auth (or P2M_UI_AUTH) must be USER:PASSWORD with neither part empty, e.g. "
                          "--auth ana:long-secret")  # fmt: skip
    return user.strip(), password


def check_port(host: str, port: int | None) -> None:
    """A port that can be listened on (None: gradio picks the first free one from 7860).

    Raises:
        ConfigError: out of range, or something already listens there.
    """
    if port is None:
        return
    if not 1 <= port <= 65535:
        raise ConfigError(
            f"--port must be between 1 and 65535, not {port}; or leave it out to take a free one"
        )
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}); pass another --port, or "
                              "leave it out to take a free one") from e  # fmt: skip


def launch_kwargs(host: str, port: int | None, share: bool, auth: tuple[str, str] | None) -> dict[str, Any]:
    """The checked keyword arguments of gradio's `launch` that concern who can reach the app.

    Raises:
        ConfigError: `share` without `auth`, a bad port, or a malformed upload limit.
    """
    if share and auth is None:
        raise ConfigError("--share makes a public link that anyone who finds it can open; add --auth "
                          "USER:PASSWORD (or set P2M_UI_AUTH) to protect it")  # fmt: skip
    check_port(host, port)
    return {"server_name": host, "server_port": port, "share": share, "auth": auth,
            "max_file_size": int(max_upload_mb() * 1e6)}  # fmt: skip
