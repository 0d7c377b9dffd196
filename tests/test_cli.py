"""The cicada-async command line: in-process for the quick commands, subprocesses for worlds."""

from __future__ import annotations

import datetime
import os
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import cicada_async
from cicada_async import tls
from cicada_async.cli import main

ENTRY = "from cicada_async.cli import main; raise SystemExit(main())"
ROOT = Path(__file__).resolve().parents[1]

ALLGATHER = textwrap.dedent("""
    import sys

    async def main(communicator):
        ranks = await communicator.allgather(communicator.rank)
        assert ranks == list(range(communicator.world_size)), ranks
        assert __name__ == "__cicada_main__", __name__
        if "fail" in sys.argv[1:] and communicator.rank == 1:
            raise ValueError("player 1 gives up")
        # one write per line: the players share the pipe
        sys.stdout.write(f"player {communicator.rank} of {communicator.world_size}: {ranks} argv={sys.argv[1:]}\\n")
        sys.stdout.flush()

    if __name__ == "__main__":
        print("the __main__ block must not run")
""")


def cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    environment.update(env or {})
    return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, timeout=timeout,
                          env=environment, cwd=cwd)


def one_error_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("cicada-async: error: "), text
    assert "Traceback" not in text
    return lines[0]


# -- in-process --------------------------------------------------------------------------------
def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == cicada_async.__version__
    assert main(["--version"]) == 0
    assert cicada_async.__version__ in capsys.readouterr().out


@pytest.mark.parametrize("command", [[], ["run"], ["start"], ["credentials"], ["certificate-info"], ["version"]])
def test_help(capsys, command):
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cicada-async")


@pytest.mark.parametrize("argv, expected", [
    ([], "a command is required"),
    (["frobnicate"], "invalid choice"),
    (["run", "prog.py"], "required: -n/--world-size (see"),
    (["run"], "required: -n/--world-size, program.py (see"),
    (["run", "-n", "0", "prog.py"], "at least 1"),
    (["run", "-n", "two", "prog.py"], "must be an integer"),
    (["run", "-n", "2", "--family", "udp", "prog.py"], "invalid choice"),
    (["run", "-n", "2", "--timeout", "-1", "prog.py"], "positive number of seconds"),
    (["run", "-n", "2", "does-not-exist.py"], "not found"),
    (["credentials"], "required: --rank"),
    (["credentials", "--rank", "-3"], "at least 0"),
    (["credentials", "--rank", "1", "--days", "0"], "at least 1"),
    (["credentials", "--rank", "1", "--directory", "/nonexistent/dir"], "does not exist"),
    (["certificate-info"], "required: PATH"),
    (["version", "extra"], "unrecognized arguments"),
    (["start", "does-not-exist.py"], "not found"),
])
def test_bad_arguments(capsys, argv, expected):
    assert main(argv) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert expected in line, line
    assert captured.out == ""


def test_bad_tls_arguments(capsys, tmp_path):
    program = tmp_path / "prog.py"
    program.write_text(ALLGATHER)
    for argv, expected in [
        (["run", "-n", "2", "--identity", "p-{rank}.pem", str(program)], "both --identity and --trusted"),
        (["run", "-n", "2", "--trusted", "p-{rank}.cert", str(program)], "both --identity and --trusted"),
        (["run", "-n", "2", "--identity", "p.pem", "--trusted", "p.cert", str(program)], "must contain {rank}"),
    ]:
        assert main(argv) == 2
        assert expected in one_error_line(capsys.readouterr().err)
    # Credentials are checked once, before any player starts.
    argv = ["run", "-n", "2", "--identity", str(tmp_path / "p-{rank}.pem"), "--trusted",
            str(tmp_path / "p-{rank}.cert"), str(program)]
    assert main(argv) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "cannot read TLS identity file" in line and "p-0.pem" in line


def test_start_needs_rank_and_world(capsys, tmp_path, monkeypatch):
    for variable in ("CICADA_RANK", "CICADA_WORLD_SIZE", "CICADA_ROOT_ADDRESS", "CICADA_ADDRESS",
                     "CICADA_IDENTITY", "CICADA_TRUSTED", "CICADA_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    program = tmp_path / "prog.py"
    program.write_text("raise SystemExit('the program must not be loaded')\n")
    root = ["--root-address", "tcp://127.0.0.1:1"]
    for argv, expected in [
        (["--world-size", "2", *root], "--rank is required (or set CICADA_RANK"),
        (["--rank", "0", *root], "--world-size is required"),
        (["--rank", "2", "--world-size", "2", *root], "rank must be in [0, 2)"),
        (["--rank", "0", "--world-size", "2"], "--root-address is required"),
    ]:
        assert main(["start", *argv, str(program)]) == 2
        assert expected in one_error_line(capsys.readouterr().err)
    monkeypatch.setenv("CICADA_RANK", "zero")
    assert main(["start", "--world-size", "2", *root, str(program)]) == 2
    assert "CICADA_RANK to an integer" in one_error_line(capsys.readouterr().err)


def test_debug_shows_traceback(capsys, tmp_path):
    assert main(["certificate-info", str(tmp_path / "missing.cert")]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert main(["--debug", "certificate-info", str(tmp_path / "missing.cert")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("cicada-async: error: cannot read")
    assert main(["certificate-info", "--debug", str(tmp_path / "missing.cert")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_credentials_and_certificate_info(capsys, tmp_path):
    assert main(["credentials", "--rank", "2", "--directory", str(tmp_path), "--days", "30",
                 "--name", "carol"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / "player-2.pem"), str(tmp_path / "player-2.cert")]
    assert stat.S_IMODE((tmp_path / "player-2.pem").stat().st_mode) == 0o600
    # existing files are not replaced without --force
    assert main(["credentials", "--rank", "2", "--directory", str(tmp_path)]) == 1
    assert "--force" in one_error_line(capsys.readouterr().err)
    before = (tmp_path / "player-2.pem").read_bytes()
    assert main(["credentials", "--rank", "2", "--directory", str(tmp_path), "--force"]) == 0
    capsys.readouterr()
    assert (tmp_path / "player-2.pem").read_bytes() != before

    for name in ("player-2.cert", "player-2.pem"):
        assert main(["certificate-info", str(tmp_path / name)]) == 0
        out = capsys.readouterr().out
        fields = dict(line.split(":", 1) for line in out.splitlines())
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        info = tls.certificate_info(tmp_path / name)
        assert fields["subject"] == "CN=cicada-async player 2"
        assert fields["rank"] == "2"
        assert fields["status"] == "valid"
        assert fields["sha256"] == info["sha256"]
        assert fields["not after"].endswith("UTC") and fields["not before"].endswith("UTC")


def test_certificate_info_expired_and_errors(capsys, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    now = datetime.datetime.now(datetime.UTC)
    old = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(1).not_valid_before(now - datetime.timedelta(days=3))
           .not_valid_after(now - datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "old.cert").write_bytes(old.public_bytes(serialization.Encoding.PEM))
    assert main(["certificate-info", str(tmp_path / "old.cert")]) == 1
    out = capsys.readouterr().out
    assert "EXPIRED" in out and "none" in out
    (tmp_path / "junk.cert").write_text("not a certificate\n")
    for path, expected in ((tmp_path / "junk.cert", "holds no certificate"),
                           (tmp_path / "missing.cert", "cannot read")):
        assert main(["certificate-info", str(path)]) == 1
        captured = capsys.readouterr()
        assert expected in one_error_line(captured.err) and captured.out == ""


# -- subprocesses ------------------------------------------------------------------------------
@pytest.mark.processes
def test_run_program(tmp_path):
    program = tmp_path / "prog.py"
    program.write_text(ALLGATHER)
    result = cli("run", "-n", "3", "--startup-timeout", "30", str(program), "--flag", "x")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = sorted(result.stdout.splitlines())
    assert lines == [f"player {rank} of 3: [0, 1, 2] argv=['--flag', 'x']" for rank in range(3)]


@pytest.mark.processes
def test_run_program_failure(tmp_path):
    program = tmp_path / "prog.py"
    program.write_text(ALLGATHER)
    result = cli("run", "-n", "3", "--startup-timeout", "30", "--family", "file", str(program), "fail")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == ["cicada-async: player 1 failed: Failed(exception=ValueError('player 1 gives up'))"], \
        result.stderr
    assert sorted(result.stdout.splitlines()) == [f"player {rank} of 3: [0, 1, 2] argv=['fail']"
                                                  for rank in (0, 2)]


@pytest.mark.processes
def test_run_player_killed(tmp_path):
    program = tmp_path / "killed.py"
    program.write_text(textwrap.dedent("""
        import os, signal

        async def main(communicator):
            await communicator.allgather(communicator.rank)
            if communicator.rank == 2:
                os.kill(os.getpid(), signal.SIGKILL)
    """))
    result = cli("run", "-n", "3", "--startup-timeout", "30", str(program))
    assert result.returncode == 1
    assert result.stderr.strip() == "cicada-async: player 2 failed: Terminated(exitcode=-9) (killed by SIGKILL)"


@pytest.mark.processes
def test_run_program_without_main(tmp_path):
    program = tmp_path / "nomain.py"
    program.write_text("def main(communicator):\n    pass\n")
    result = cli("run", "-n", "2", "--startup-timeout", "30", str(program))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all("is not a coroutine function" in line for line in lines), result.stderr
    program.write_text("def main(:\n")
    result = cli("run", "-n", "2", str(program))
    assert result.returncode == 1
    assert "line 1" in one_error_line(result.stderr)


@pytest.mark.processes
def test_run_with_tls(tmp_path):
    for rank in range(3):
        tls.write_credentials(rank, tmp_path)
    program = tmp_path / "prog.py"
    program.write_text(ALLGATHER)
    result = cli("run", "-n", "3", "--startup-timeout", "30", "--timeout", "2",
                 "--identity", "player-{rank}.pem", "--trusted", "player-{rank}.cert", "prog.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.processes
def test_start_three_players(tmp_path):
    program = tmp_path / "prog.py"
    program.write_text(ALLGATHER)
    root = f"tcp://127.0.0.1:{_free_port()}"
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    players = []
    for rank in range(3):
        arguments = ["start", "--rank", str(rank), "--world-size", "3", "--root-address", root,
                     "--token", "secret", "--startup-timeout", "30"]
        if rank > 0:  # rank 0 listens on the root address (--address would replace it)
            arguments += ["--address", "tcp://127.0.0.1"]
        arguments += [str(program), "--rank-arg", str(rank)]
        players.append(subprocess.Popen([sys.executable, "-c", ENTRY, *arguments], env=environment, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        outputs = [player.communicate(timeout=60) for player in players]
    finally:
        for player in players:
            if player.poll() is None:
                player.kill()
                player.wait()
    for rank, (player, (out, err)) in enumerate(zip(players, outputs, strict=True)):
        assert player.returncode == 0, err
        assert out.strip() == f"player {rank} of 3: [0, 1, 2] argv=['--rank-arg', '{rank}']", (out, err)


@pytest.mark.processes
def test_start_environment_and_failure(tmp_path):
    """Options from CICADA_* variables; a main that raises gives exit code 1 and one line."""
    program = tmp_path / "prog.py"
    program.write_text(ALLGATHER)
    root = f"tcp://127.0.0.1:{_free_port()}"
    players = []
    for rank in range(2):
        env = {"CICADA_RANK": str(rank), "CICADA_WORLD_SIZE": "2", "CICADA_ROOT_ADDRESS": root}
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
        environment.update(env)
        players.append(subprocess.Popen([sys.executable, "-c", ENTRY, "start", "--startup-timeout", "30",
                                         str(program), "fail"], env=environment, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        outputs = [player.communicate(timeout=60) for player in players]
    finally:
        for player in players:
            if player.poll() is None:
                player.kill()
                player.wait()
    assert players[0].returncode == 0, outputs[0][1]
    assert outputs[0][0].strip() == "player 0 of 2: [0, 1] argv=['fail']"
    assert players[1].returncode == 1
    assert outputs[1][1].strip() == "cicada-async: player 1 failed: ValueError: player 1 gives up"


def _start_players(arguments: list[list[str]], env: dict[str, str] | None = None,
                   timeout: float = 60) -> list[tuple[int, str, str]]:
    """Run one ``cicada-async start`` per argument list at once; return (code, out, err) of each."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    environment.update(env or {})
    players = [subprocess.Popen([sys.executable, "-c", ENTRY, "start", *argv], env=environment, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in arguments]
    try:
        outputs = [player.communicate(timeout=timeout) for player in players]
    finally:
        for player in players:
            if player.poll() is None:
                player.kill()
                player.wait()
    return [(player.returncode, out, err) for player, (out, err) in zip(players, outputs, strict=True)]


@pytest.mark.processes
def test_start_token_mismatch_exits_1(tmp_path):
    """A TokenMismatch is a connection failure (exit code 1, one line naming the token), not bad
    arguments (2), although it is also a ValueError."""
    program = tmp_path / "prog.py"
    program.write_text(ALLGATHER)
    root = f"tcp://127.0.0.1:{_free_port()}"
    common = ["--world-size", "2", "--root-address", root, "--startup-timeout", "3"]
    results = _start_players([
        ["--rank", "0", "--token", "alpha", *common, str(program)],
        ["--rank", "1", "--token", "beta", "--address", "tcp://127.0.0.1", *common, str(program)],
    ])
    for code, out, err in results:
        assert code == 1, err
        assert out == "" and "Traceback" not in err
        lines = err.strip().splitlines()  # rank 0 also logs the refused connection as a warning
        assert lines[-1].startswith("cicada-async: error: ") and "token" in lines[-1], err
        assert all(line.startswith("WARNING:") for line in lines[:-1]), err


def _python_m(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-W", "error", "-m", module, *args], capture_output=True, text=True,
                          timeout=60, env=environment, cwd=cwd)


@pytest.mark.processes
@pytest.mark.parametrize("module", ["cicada_async", "cicada_async.cli"])
def test_python_m_is_the_console_script(tmp_path, module):
    """``python -m cicada_async`` and ``python -m cicada_async.cli`` run the command line (the
    latter used to do nothing and exit 0)."""
    program = tmp_path / "prog.py"
    program.write_text(ALLGATHER)
    result = _python_m(module, "run", "-n", "2", "--startup-timeout", "30", str(program), "x")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [f"player {rank} of 2: [0, 1] argv=['x']" for rank in range(2)]
    result = _python_m(module, "run", "-n", "2", "--startup-timeout", "30", str(program), "fail")
    assert result.returncode == 1
    assert "player 1 failed" in result.stderr
    result = _python_m(module, "version")
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, cicada_async.__version__, "")
    result = _python_m(module, "run", "-n", "0", "prog.py")
    assert result.returncode == 2 and "at least 1" in one_error_line(result.stderr)
    result = _python_m(module, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: cicada-async")


ARGV = textwrap.dedent("""
    import sys

    async def main(communicator):
        print(communicator.rank, communicator.world_size, sys.argv[1:])
""")


@pytest.mark.parametrize("trusted", [
    ["--trusted", "player-0.cert", "player-1.cert", "player-2.cert"],
    ["--trusted=player-0.cert", "--trusted=player-1.cert", "--trusted", "player-2.cert"],
    ["--trusted", "player-0.cert,player-1.cert", "player-2.cert"],
])
def test_start_trusted_takes_several_paths(capsys, tmp_path, monkeypatch, trusted):
    """``--trusted A B C prog.py``: the second certificate used to be taken as the program.
    The program's own arguments are not rewritten, even a ``--trusted`` among them."""
    for variable in ("CICADA_ROOT_ADDRESS", "CICADA_ADDRESS", "CICADA_IDENTITY", "CICADA_TRUSTED", "CICADA_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    for rank in range(3):
        tls.write_credentials(rank, tmp_path)
    (tmp_path / "prog.py").write_text(ARGV)
    argv = ["start", "--rank", "0", "--world-size", "1", "--root-address", "tcp://127.0.0.1:0",
            "--identity", "player-0.pem", *trusted, "prog.py", "--trusted", "x", "y.py"]
    assert main(argv) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == "0 1 ['--trusted', 'x', 'y.py']"


def test_trusted_list_ends_at_an_option_or_double_dash(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for rank in range(2):
        tls.write_credentials(rank, tmp_path)
    (tmp_path / "prog").write_text(ARGV)  # a program whose name does not end in .py
    (tmp_path / "prog.py").write_text(ARGV)
    base = ["start", "--rank", "0", "--world-size", "1", "--root-address", "tcp://127.0.0.1:0",
            "--identity", "player-0.pem"]
    assert main([*base, "--trusted", "player-0.cert", "player-1.cert", "--", "prog", "a"]) == 0
    assert capsys.readouterr().out.strip() == "0 1 ['a']"
    assert main([*base, "--trusted", "player-0.cert", "player-1.cert", "--name", "w", "prog", "b"]) == 0
    assert capsys.readouterr().out.strip() == "0 1 ['b']"
    # the README's multi-host form: the list ends at --token
    assert main([*base, "--trusted", "player-0.cert", "player-1.cert", "--token", "run-42", "prog.py"]) == 0
    assert capsys.readouterr().out.strip() == "0 1 []"
    # a missing certificate is named, not taken for the program
    assert main([*base, "--trusted", "player-0.cert", "missing.cert", "--", "prog"]) == 1
    assert "missing.cert" in one_error_line(capsys.readouterr().err)
    # --trusted without a value is still a usage error
    assert main([*base, "--trusted", "--name", "w", "prog"]) == 2
    assert "--trusted: expected one argument" in one_error_line(capsys.readouterr().err)


@pytest.mark.processes
def test_start_three_players_with_tls_trusting_three_certificates(tmp_path):
    """The multi-host TLS command of the README, with the three certificates after one --trusted."""
    for rank in range(3):
        tls.write_credentials(rank, tmp_path)
    program = tmp_path / "prog.py"
    program.write_text(ALLGATHER)
    root = f"tcp://127.0.0.1:{_free_port()}"
    certificates = [str(tmp_path / f"player-{rank}.cert") for rank in range(3)]
    arguments = []
    for rank in range(3):
        argv = ["--rank", str(rank), "--world-size", "3", "--root-address", root, "--startup-timeout", "30",
                "--identity", str(tmp_path / f"player-{rank}.pem"), "--trusted", *certificates]
        if rank > 0:
            argv += ["--address", "tcp://127.0.0.1"]
        arguments.append([*argv, str(program), "--rank-arg", str(rank)])
    for rank, (code, out, err) in enumerate(_start_players(arguments)):
        assert code == 0, err
        assert out.strip() == f"player {rank} of 3: [0, 1, 2] argv=['--rank-arg', '{rank}']", (out, err)


@pytest.mark.processes
def test_run_trusted_takes_several_paths(tmp_path):
    for rank in range(2):
        tls.write_credentials(rank, tmp_path)
    (tmp_path / "prog.py").write_text(ALLGATHER)
    result = cli("run", "-n", "2", "--startup-timeout", "30", "--identity", "player-{rank}.pem",
                 "--trusted", "player-0.cert", "player-1.cert", "prog.py", "--trusted", "z", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [f"player {rank} of 2: [0, 1] argv=['--trusted', 'z']"
                                                  for rank in range(2)]
