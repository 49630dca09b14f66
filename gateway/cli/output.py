"""``open --output DIR``: the verified content of a message, as files.

The names come from the sender (a Content-Disposition filename), so they are
hostile: only the last path component is kept, reduced to letters, digits
and a few punctuation marks, never empty, never a dot name, bounded in
length. Files are created exclusively (``O_CREAT|O_EXCL``, which also refuses
to follow a symbolic link planted at the name), so nothing existing is ever
overwritten, inside DIR or through a link out of it: a name already taken is
numbered (``ccd.xml``, ``ccd-2.xml``...).

What is written is what the signature covered, from the core's own parse
(``Opened.content`` and ``Opened.parts``), never a second reading of the
raw message.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from gateway.core import Opened, PartKind
from gateway.core.limits import DEFAULT_LIMITS
from gateway.core.mime import MimeError, parse_entity

from .args import CommandFailed

MESSAGE_FILE = "message.eml"
MAX_NAME_CHARS = 100
"""Far under every file system's 255-byte limit, even in UTF-8, with room for a number."""
MAX_NUMBER = 1000
"""A directory already holding a thousand copies of a name is a mistake, not a place to write."""

_EXTENSIONS = {PartKind.CCDA: ".xml", PartKind.PDF: ".pdf", PartKind.XDM: ".zip", PartKind.TEXT: ".txt"}
_KEPT_PUNCTUATION = frozenset("._-+=@,()[] ")


def safe_name(given: str | None, fallback: str) -> str:
    """A file name that stays in its directory, from a name the sender chose."""
    name = (given or "").replace("\\", "/").rpartition("/")[2]
    name = unicodedata.normalize("NFC", name)
    name = "".join(c if c.isalnum() or c in _KEPT_PUNCTUATION else "_" for c in name).strip(" .")
    if not name.strip("_"):
        name = fallback
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:16] if dot else ""
        name = (stem if dot else name)[: MAX_NAME_CHARS - len(ext) - 1] + (f".{ext}" if ext else "")
    return name


def _numbered(name: str, n: int) -> str:
    if n == 1:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem}-{n}.{ext}" if dot and stem else f"{name}-{n}"


def _create(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` under a new name in ``directory``, numbering if taken."""
    for n in range(1, MAX_NUMBER + 1):
        path = directory / _numbered(name, n)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            raise CommandFailed(f"--output {directory}: cannot create {path.name}: {exc.strerror}") from exc
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path
    raise CommandFailed(f"--output {directory}: {MAX_NUMBER} files named like {name} already")


def inner_message(opened: Opened) -> bytes:
    """The wrapped message (the body of the signed message/rfc822 entity), or
    the signed entity itself when the sender did not wrap."""
    if not opened.wrapped:
        return opened.content
    try:
        return parse_entity(opened.content, DEFAULT_LIMITS).body
    except MimeError:  # pragma: no cover -- the core parsed these same bytes to open the message
        return opened.content


def write_content(opened: Opened, directory: Path) -> list[Path]:
    """The inner message as ``message.eml``, then every attachment; the paths written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandFailed(f"--output {directory}: {exc.strerror}") from exc
    if not directory.is_dir():
        raise CommandFailed(f"--output {directory}: not a directory")
    written = [_create(directory, MESSAGE_FILE, inner_message(opened))]
    for n, part in enumerate((p for p in opened.parts if p.attachment), 1):
        fallback = f"attachment-{n}{_EXTENSIONS.get(part.kind, '.bin')}"
        written.append(_create(directory, safe_name(part.filename, fallback), part.data))
    return written
