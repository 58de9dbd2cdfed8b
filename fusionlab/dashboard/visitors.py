"""Who is at the other end of a browser, and what they may do on a shared (classroom) server.

Each browser gets a random token, kept in a cookie so a reload is the same visitor; the run store records a
hash of it as a run's ``owner`` (never the token itself, which would let anyone who reads the run list act as
its owner), with the name the visitor chose or was given. On a classroom server a visitor may cancel only the
runs they queued and queue only a few at a time; the teacher, who knows the passphrase, may cancel any run and
prepare the demo. A single-user server (the default) lets its one user do everything, as before.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from fusionlab.runstore import Run

TOKEN_BYTES = 16
MAX_NAME_LENGTH = 32
_TOKEN = re.compile(r"[0-9a-f]{32}")
_NAME = re.compile(r"[\w .'-]+")
_ADJECTIVES = ("amber", "brave", "calm", "deft", "eager", "fair", "glad", "keen", "lucid", "merry", "nimble", "quiet")
_ANIMALS = ("otter", "heron", "lynx", "panda", "robin", "seal", "tapir", "wren", "yak", "zebra", "koala", "finch")


@dataclass(frozen=True)
class Visitor:
    """One browser: its secret token, the name it shows, and whether the teacher's passphrase was given."""

    token: str
    name: str
    teacher: bool = False

    @property
    def owner_id(self) -> str:
        """What runs record as their owner: a hash of the token, so the token itself is never shown."""
        return owner_id(self.token)


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def valid_token(token: object) -> str | None:
    """``token`` if it has the shape this server hands out, else None (a cookie from elsewhere is ignored)."""
    return token if isinstance(token, str) and _TOKEN.fullmatch(token) else None


def owner_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def generated_name(token: str) -> str:
    """A friendly name derived from the token (the same browser keeps the same name): ``merry-otter-42``."""
    digest = hashlib.sha256(b"name:" + token.encode()).digest()
    return f"{_ADJECTIVES[digest[0] % len(_ADJECTIVES)]}-{_ANIMALS[digest[1] % len(_ANIMALS)]}-{digest[2] % 100}"


def check_visitor_name(name: str) -> str:
    """A visitor's chosen name, stripped: 1 to 32 letters, digits, spaces and ``. ' - _``; else a ValueError."""
    name = (name or "").strip()
    if not name:
        raise ValueError("your name is empty: type one, or keep the one you were given")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"your name may have at most {MAX_NAME_LENGTH} characters, it has {len(name)}")
    if not _NAME.fullmatch(name):
        raise ValueError("your name may hold only letters, digits, spaces and . ' - _")
    return name


def can_cancel(visitor: Visitor, run: Run, classroom: bool) -> bool:
    """A visitor may cancel their own runs; the teacher, and anyone on a single-user server, any run."""
    return not classroom or visitor.teacher or (run.owner is not None and run.owner == visitor.owner_id)


def can_manage(visitor: Visitor, classroom: bool) -> bool:
    """Whether the visitor may act on the whole workspace (prepare the demo): the teacher, or a single user."""
    return not classroom or visitor.teacher


def queue_limit(visitor: Visitor, classroom: bool, quota: int) -> int | None:
    """How many runs the visitor may have queued or running at once (None: no limit)."""
    return quota if classroom and not visitor.teacher else None


def sees_server_paths(visitor: Visitor, classroom: bool) -> bool:
    """Whether the pages may show this visitor the server's directories (workspace, data, a config's paths): the
    teacher and a single user may; a student on a shared server sees names only (a path tells how the server is
    laid out, which no visitor needs)."""
    return not classroom or visitor.teacher


def shown_path(path: object, visible: bool) -> str:
    """A path as a page shows it: whole where :func:`sees_server_paths`, else only its last part (a workspace's
    name), so nothing about the server's layout reaches a student's browser."""
    text = str(path)
    if visible or not text:
        return text
    return Path(text).name or "(on the server)"


OUTSIDE_LABEL = "teacher (outside the dashboard)"


def owner_label(run: Run, visitor: Visitor | None = None) -> str:
    """Who queued a run, as the queue shows it: "you", their name, or — for a run queued outside the dashboard
    (the command line, the demo), which name ownership counts as the teacher's — "teacher (outside the dashboard)"."""
    if run.owner is None:
        return OUTSIDE_LABEL
    if visitor is not None and run.owner == visitor.owner_id:
        return "you"
    return run.owner_name or "another visitor"
