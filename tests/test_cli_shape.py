"""The ``directgw`` command line as a whole: every option explained, one exit-code
convention stated, ``--config`` before or after the command, and a start-up
that does not load the database layer for commands that do not use it."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.admin import DEFAULT_REFRESH, DIRECTION_CHOICES
from gateway.cli.main import build_parser, main


def _parsers(parser: argparse.ArgumentParser, path: str = "directgw"):
    """Every parser of the tree, with the command line that reaches it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def _undocumented():
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                yield f"{path} {'/'.join(action.option_strings) or action.dest}"


def test_every_option_and_argument_has_help():
    assert list(_undocumented()) == []


def test_the_walk_reaches_every_command():
    """The help test above is only as good as its walk."""
    paths = {path for path, _ in _parsers(build_parser())}
    assert {"directgw verify", "directgw domains add", "directgw bundles refresh", "directgw certs export-ldif",
            "directgw dns", "directgw init", "directgw open", "directgw seal"} <= paths


def test_help_states_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "exit status: 0 done" in out and "1 refused or failed" in out and "2 usage error" in out


@pytest.mark.parametrize(
    "argv", [["nosuchcommand"], ["verify"], ["open", "m.eml", "--no-such-option"], ["bundles", "refresh", "--due=x"]],
    ids=["unknown-command", "missing-argument", "unknown-option", "flag-with-value"],
)
def test_argparse_usage_errors_are_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    capsys.readouterr()
    assert exit_.value.code == 2


def test_admin_defaults_agree_with_their_owners():
    """Spelled out in gateway.cli.admin so that building the parser does not import the database layer."""
    from anchors.bundles import DEFAULT_REFRESH as OWNER_REFRESH
    from gateway.cli.admin.common import DIRECTIONS, duration_arg

    assert duration_arg(DEFAULT_REFRESH) == OWNER_REFRESH
    assert tuple(DIRECTIONS) == DIRECTION_CHOICES


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_is_accepted_before_and_after_the_command(tmp_path, monkeypatch, capsys, where):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIRECTGW_CONFIG", raising=False)
    config = tmp_path / "etc" / "gw.toml"
    option = ["--config", str(config)]

    def argv(*command: str) -> list[str]:
        return [*option, *command] if where == "before" else [*command, *option]

    assert main(argv("init", "--domain", "a.test")) == 0
    assert config.is_file() and not (tmp_path / "directgw.toml").exists()
    capsys.readouterr()
    assert main(argv("domains", "list", "--json")) == 0
    assert [d["domain"] for d in json.loads(capsys.readouterr().out)] == ["a.test"]


def test_config_after_the_command_wins(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a, b = tmp_path / "a" / "gw.toml", tmp_path / "b" / "gw.toml"
    assert main(["init", "--domain", "a.test", "--config", str(a)]) == 0
    assert main(["init", "--domain", "b.test", "--config", str(b)]) == 0
    capsys.readouterr()
    assert main(["--config", str(a), "domains", "list", "--json", "--config", str(b)]) == 0
    assert [d["domain"] for d in json.loads(capsys.readouterr().out)] == ["b.test"]


ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("sqlalchemy", "alembic", "aiosqlite", "asyncpg")


def _imported_by(code: str) -> set[str]:
    script = code + "\nimport sys, json; sys.stderr.write(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return {m.split(".")[0] for m in json.loads(out.stderr.splitlines()[-1])}


def test_building_the_parser_loads_no_database_or_http_layer():
    loaded = _imported_by("import gateway.cli.main as m; m.build_parser()")
    assert loaded.isdisjoint({*HEAVY, "aiohttp", "ldap3", "dns"}), sorted(loaded & {*HEAVY, "aiohttp", "ldap3", "dns"})


def test_the_message_commands_load_no_database_layer(tmp_path):
    """open, seal and verify run on files alone, through the core and the trust engine: the
    database layer is never imported."""
    from tests import messages, smime
    from tests.pki import NOW, hisp

    a, b = hisp("a.test"), hisp("b.test")
    alice, bob = a.address("alice"), b.address("bob")
    files = {"root.pem": a.root.pem, "alice.pem": alice.pem, "alice.key": alice.key_pem(), "bob.pem": bob.pem,
             "plain.eml": messages.plain(),
             "signed.eml": smime.HEADERS + smime.detached(smime.wrap(messages.plain()), alice.pair,
                                                          chain=[c.ref for c in alice.chain()[1:-1]])}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    at = ["--at", NOW.isoformat()]
    for argv in (["open", "signed.eml", "--signed-only", *at], ["verify", "signed.eml", "--anchor", "root.pem", *at],
                 ["seal", "plain.eml", "--to-cert", "bob.pem", "--sign-key", "alice.key", "--sign-cert", "alice.pem"]):
        code = (f"from gateway.cli.main import main\nimport os, sys\nos.chdir({str(tmp_path)!r})\n"
                f"sys.stdout = open(os.devnull, 'w')\nassert main({argv!r}) == 0")
        loaded = _imported_by(code)
        assert loaded.isdisjoint(HEAVY), (argv, sorted(loaded & set(HEAVY)))


def test_help_starts_fast():
    """Measured as the child's CPU time, which a loaded machine inflates far less than wall time:
    about 0.3 s; it took 1.4 s while every command imported SQLAlchemy and Alembic."""
    best = min(_cpu_seconds([sys.executable, "-m", "gateway.cli.main", "--help"]) for _ in range(3))
    assert best < 1.0, best


def _cpu_seconds(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, capture_output=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
