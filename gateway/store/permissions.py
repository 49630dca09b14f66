"""Who may read the SQLite file.

The database holds our private keys (docs/storage.md, "keys in the
database"), so the file gets the rule a key file gets at import
(``gateway.domains.check_key_file``): readable by the gateway's user only.
SQLite creates a new file with the process umask (0644 with the usual 022)
and its -wal and -shm files with the main file's mode, so the file is made
here, 0600, before SQLite first opens it; an existing file that group or
others can read is refused rather than quietly used. (With PostgreSQL the
database role and pg_hba.conf are the protection; nothing to check here.)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import StoreError, StoreProblem


def protect_sqlite_file(path: Path) -> None:
    """Create ``path`` 0600 if absent; refuse it if group or others may read or write it."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(StoreProblem.UNREACHABLE, f"cannot create the database {path}: {exc.strerror}") from exc
    else:
        os.close(fd)
        return
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise StoreError(StoreProblem.UNREACHABLE, f"cannot open the database {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(
            StoreProblem.EXPOSED,
            f"{path} holds private keys and is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}` (and the same for its -wal and -shm files), and replace the keys "
            "if others could have read them",
        )
