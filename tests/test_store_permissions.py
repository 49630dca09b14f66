"""The SQLite file holds private keys, so it is the gateway user's alone:
created 0600 whatever the umask or the directory, and refused (typed, one
line at the command line) when group or others can read it."""

import os
import stat

import pytest

from gateway.cli.main import main
from gateway.store import StoreError, StoreProblem, open_store


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(name="open_dir")
def open_dir_fixture(tmp_path):
    """A data directory others can enter, as a packaged /var/lib/directgw may be."""
    d = tmp_path / "data"
    d.mkdir()
    d.chmod(0o755)
    old = os.umask(0o022)
    yield d
    os.umask(old)


async def test_new_database_file_is_private(open_dir):
    db = open_dir / "directgw.db"
    store = await open_store(f"sqlite+aiosqlite:///{db}")
    await store.close()
    assert mode(db) == 0o600
    assert all(mode(f) == 0o600 for f in open_dir.iterdir()), "-wal and -shm follow the main file"


@pytest.mark.parametrize("file_mode", [0o644, 0o640, 0o604, 0o660], ids=oct)
async def test_database_readable_by_others_is_refused(open_dir, file_mode):
    db = open_dir / "directgw.db"
    store = await open_store(f"sqlite+aiosqlite:///{db}")
    await store.close()
    db.chmod(file_mode)
    with pytest.raises(StoreError) as err:
        await open_store(f"sqlite+aiosqlite:///{db}")
    assert err.value.problem is StoreProblem.EXPOSED
    assert "chmod 600" in err.value.detail


def test_cli_init_in_an_open_directory_and_a_later_chmod(open_dir, capsys):
    config = open_dir.parent / "directgw.toml"
    assert main(["init", "--config", str(config), "--domain", "a.test", "--data-dir", "data"]) == 0
    db = open_dir / "directgw.db"
    assert mode(db) == 0o600
    capsys.readouterr()

    db.chmod(0o644)
    assert main(["domains", "list", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "readable by group or others (mode 0644)" in err
