"""Every code block of the README runs as written (or is checked against what it shows).

Each fenced block in README.md is preceded by a marker comment, ``<!-- readme-test: KIND NAME -->``,
that says how this file checks it; a block without one fails the test, so a new snippet cannot
slip in unchecked.  Kinds:

- ``program``: a complete Python program, run as a script;
- ``player NAME``: the body of a player's ``async def main(communicator)``, run in an in-process
  world and then checked by the harness of that name;
- ``excerpt PATH``: lines taken from a file of the repository, checked to appear there in order;
- ``output NAME``: what a program prints, checked against a real run;
- ``shell NAME`` / ``python NAME``: commands or a script that need files (a program, certificates),
  run in a temporary directory by the harness of that name;
- ``install``: the two commands of the first block (the test command is the one ``.ci/run`` runs);
- ``layout``: the source tree, checked against the files that exist.

Inline ``python examples/...`` commands are run too, and inline ``python benchmarks/...``
commands must name a script whose ``--help`` lists every option they use.
"""

from __future__ import annotations

import ast
import asyncio
import os
import pathlib
import re
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy
import pytest

from cicada_async.testing import World

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*(?P<kind>[\w-]+)(?:\s+(?P<name>[^\s>]+))?\s*-->")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    kind: str | None
    name: str | None

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.kind} {self.name or ''})".strip()


def readme_blocks() -> list[Block]:
    """The fenced blocks of the README with the marker that precedes each (if any)."""
    lines = README.read_text().splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[index])
        if not fence:
            index += 1
            continue
        start = index
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
        previous = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.fullmatch(previous.strip())
        blocks.append(Block(line=start + 1, language=fence.group(1), text="\n".join(lines[start + 1:end]) + "\n",
                            kind=marker.group("kind") if marker else None,
                            name=marker.group("name") if marker else None))
        index = end + 1
    return blocks


BLOCKS = readme_blocks()


def blocks_of(kind: str) -> list[Block]:
    return [block for block in BLOCKS if block.kind == kind]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_command(command: str | list[str], cwd: pathlib.Path, timeout: float = 120) -> subprocess.CompletedProcess:
    shell = isinstance(command, str)
    result = subprocess.run(command, cwd=cwd, shell=shell, executable="/bin/bash" if shell else None,
                            env=environment(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command!r} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


PROGRAM = """\
async def main(communicator):
    return await communicator.allgather(communicator.rank)
"""


def test_every_block_is_checked():
    known = {"program", "player", "excerpt", "output", "shell", "python", "install", "layout"}
    unchecked = [str(block) for block in BLOCKS if block.kind not in known]
    assert not unchecked, f"README blocks with no (or an unknown) readme-test marker: {unchecked}"
    for kind, harnesses in (("player", PLAYERS), ("output", OUTPUTS), ("shell", SHELLS), ("python", SCRIPTS)):
        names = [block.name for block in blocks_of(kind)]
        assert sorted(names) == sorted(harnesses), f"{kind} blocks {names} against harnesses {sorted(harnesses)}"


def test_install_block_runs_the_demo_and_the_ci_test_command():
    (block,) = blocks_of("install")
    assert block is BLOCKS[0], "the README's first code block holds the two commands"
    demo, tests = block.text.splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines(), "the second command is what .ci/run runs"
    assert demo.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install ")
    assert tests.endswith("pip install '.[test]' && python -m pytest")
    demo_command = demo.rsplit(" && ", 1)[1]
    assert demo_command == "python examples/fault_recovery.py"
    run_command(shlex.split(demo_command.replace("python", sys.executable, 1)), ROOT)


@pytest.mark.parametrize("block", blocks_of("program"), ids=str)
def test_program_blocks_run(block, tmp_path):
    """A program runs; if its ``print(...)`` line ends with a comment, that comment is a
    Python expression of what it prints."""
    script = tmp_path / "snippet.py"
    script.write_text(block.text)
    result = run_command([sys.executable, str(script)], tmp_path)
    shown = [line.split("#", 1)[1].strip() for line in block.text.splitlines()
             if line.startswith("print(") and "#" in line]
    if shown:
        expected = eval(shown[-1], {})  # the README's own text
        assert ast.literal_eval(result.stdout.strip().splitlines()[-1]) == expected


# --- player fragments: prelude, players, check of the locals the fragment left ------------------


def _check_concurrency(results: list[dict[str, Any]]) -> None:
    for names in results:
        numpy.testing.assert_allclose([float(v) for v in names["values"]], [0.0, 2.0, 6.0], atol=2**-14)
        numpy.testing.assert_allclose([float(v) for v in names["results"]], [0.0, 2.0, 6.0], atol=2**-14)
        assert abs(float(names["task"].result())) <= 2**-14


def _check_shamir(results: list[dict[str, Any]]) -> None:
    for rank, names in enumerate(results):
        numpy.testing.assert_allclose(names["total"], [5.5, -1.75])
        numpy.testing.assert_allclose(names["product"], [6.0, -0.5], atol=2**-14)
        if rank == 2:
            numpy.testing.assert_allclose(names["only_two"], [1.5, -2.0])
        else:
            assert names["only_two"] is None


def _check_nothing(results: list[dict[str, Any]]) -> None:
    assert len(results) == 3


PLAYERS: dict[str, tuple[str, Callable[[list[dict[str, Any]]], None]]] = {
    "concurrency": ("""\
        protocol = ShamirProtocolSuite(communicator, threshold=2)
        xs = [await protocol.share(src=0, secret=numpy.array(float(i)) if communicator.rank == 0 else None, shape=())
              for i in range(3)]
        ys = [await protocol.share(src=1, secret=numpy.array(float(i + 1)) if communicator.rank == 1 else None,
                                   shape=()) for i in range(3)]
        """, _check_concurrency),
    "shamir": ("", _check_shamir),
    "logger": ("", _check_nothing),
}


@pytest.mark.parametrize("block", blocks_of("player"), ids=str)
async def test_player_blocks_run(block):
    prelude, check = PLAYERS[block.name]
    body = textwrap.dedent(prelude) + block.text + "task = locals().get('task')\nif task is not None: await task\n" \
        "return {k: v for k, v in locals().items() if k != 'communicator'}\n"
    source = "async def main(communicator):\n" + textwrap.indent(body, "    ")
    namespace: dict[str, Any] = {}
    exec(
        "import asyncio, logging, numpy\nimport cicada_async\n"
        "from cicada_async.shamir import ShamirBasicProtocolSuite, ShamirProtocolSuite\n" + source, namespace)
    async with World(3, timeout=5) as world:
        results = await world.run(namespace["main"])
    check(results)


async def test_connect_block_forms_a_world():
    """The embedding section's ``connect`` call, at 127.0.0.1 instead of 10.0.0.1."""
    (block,) = [b for b in blocks_of("python") if b.name == "connect"]
    source = block.text.replace("tcp://10.0.0.1:25000", f"tcp://127.0.0.1:{free_port()}")
    namespace: dict[str, Any] = {}
    exec("from cicada_async import AsyncSocketCommunicator\nasync def player(rank):\n"
         + textwrap.indent(source, "    ") + "    async with communicator:\n"
         "        return await communicator.allgather(rank)\n", namespace)
    results = await asyncio.wait_for(asyncio.gather(*(namespace["player"](rank) for rank in range(3))), 30)
    assert results == [[0, 1, 2]] * 3


# --- excerpts and outputs ------------------------------------------------------------------------


def _code_lines(text: str) -> list[str]:
    """Lines without comments and surrounding space, leaving out blank lines and ``...`` ones."""
    out = []
    for line in text.splitlines():
        code = re.sub(r"\s+#.*$", "", line).strip()
        if code and not code.startswith("#") and not code.startswith("..."):
            out.append(code)
    return out


@pytest.mark.parametrize("block", blocks_of("excerpt"), ids=str)
def test_excerpts_match_their_source(block):
    source = _code_lines((ROOT / block.name).read_text())
    position = 0
    for line in _code_lines(block.text):
        # A line elided in the middle ("f"... shrank comm ...", src=0)") matches a line it begins.
        head = line.split("...")[0].rstrip() if "..." in line else None
        found = next((index for index in range(position, len(source))
                      if source[index] == line or (head and source[index].startswith(head))), None)
        assert found is not None, f"{block}: {line!r} is not in {block.name} (in this order)"
        position = found + 1


def _fault_recovery_output() -> list[str]:
    result = run_command([sys.executable, str(ROOT / "examples" / "fault_recovery.py")], ROOT)
    return result.stderr.splitlines()


async def _concurrency_error_output() -> list[str]:
    from cicada_async import ConcurrencyError
    from cicada_async.shamir import ShamirProtocolSuite

    async def fn(communicator):
        protocol = ShamirProtocolSuite(communicator, threshold=2)
        x = await protocol.share(src=0, secret=numpy.array(2.0) if communicator.rank == 0 else None, shape=())

        async def undecorated():
            await asyncio.sleep(0)
            return await protocol.multiply(x, x)

        try:
            await asyncio.gather(undecorated(), undecorated())
        except ConcurrencyError as error:
            return f"ConcurrencyError: {error}"
        return "no error"

    async with World(3, timeout=1) as world:
        messages = await world.run(fn)
    return [" ".join(messages[0].split())]


OUTPUTS: dict[str, Callable[[], Any]] = {
    "fault-recovery": _fault_recovery_output,
    "concurrency-error": _concurrency_error_output,
}


@pytest.mark.parametrize("block", blocks_of("output"), ids=str)
async def test_outputs_are_what_the_programs_print(block):
    produce = OUTPUTS[block.name]
    output = await produce() if asyncio.iscoroutinefunction(produce) else await asyncio.to_thread(produce)
    text = "\n".join(output)
    if block.name == "concurrency-error":
        shown = " ".join(block.text.split())
        pieces = [piece.strip() for piece in shown.split("...") if piece.strip()]
        pieces = [re.sub(r"'Task-\d+'", "'Task-N'", piece) for piece in pieces]
        text = re.sub(r"'Task-\d+'", "'Task-N'", text)
    else:
        pieces = [line for line in block.text.splitlines() if line.strip() and line.strip() != "..."]
    position = 0
    for piece in pieces:
        found = text.find(piece, position)
        assert found >= 0, f"{block}: {piece!r} is not in what the program printed:\n{text}"
        position = found + len(piece)


def test_layout_names_files_that_exist():
    (block,) = blocks_of("layout")
    package = ROOT / "cicada_async"
    names = {path.name for path in package.rglob("*.py")} | {path.name + "/" for path in package.rglob("*")
                                                              if path.is_dir()}
    mentioned = set(re.findall(r"\w+\.py", block.text))
    mentioned |= set(re.findall(r"^\s*(\w+/)", block.text, flags=re.MULTILINE)) - {"cicada_async/"}
    missing = sorted(mentioned - names)
    assert not missing, f"the README's layout names files that do not exist: {missing}"


# --- commands that need files --------------------------------------------------------------------


def _cli_summary(block: Block, tmp_path: pathlib.Path) -> None:
    (tmp_path / "program.py").write_text(PROGRAM)
    port = free_port()
    for line in block.text.splitlines():
        command = re.sub(r"\s+#.*$", "", line).replace("[args...]", "").strip()
        command = command.replace("--rank R --world-size N", "--rank 0 --world-size 1")
        command = command.replace("tcp://HOST:PORT", f"tcp://127.0.0.1:{port}")
        run_command(command, tmp_path, timeout=60)


def _tls_local(block: Block, tmp_path: pathlib.Path) -> None:
    (tmp_path / "program.py").write_text(PROGRAM)
    run_command(block.text, tmp_path, timeout=60)


def _tls_hosts(block: Block, tmp_path: pathlib.Path) -> None:
    (tmp_path / "program.py").write_text(PROGRAM)
    run_command("for r in 0 1 2; do cicada-async credentials --rank $r; done", tmp_path)
    commands = [command.strip() for command in block.text.replace("\\\n", " ").splitlines() if command.strip()]
    assert commands[-1] == "...", "the block shows ranks 0 and 1, then '...'"
    commands = commands[:-1]
    commands.append(commands[1].replace("--rank 1", "--rank 2").replace("player-1.pem", "player-2.pem"))
    address = f"tcp://127.0.0.1:{free_port()}"
    processes = [subprocess.Popen(shlex.split(command.replace("tcp://10.0.0.1:25000", address)), cwd=tmp_path,
                                  env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for command in commands]
    try:
        outputs = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, f"{process.args}: exit {process.returncode}\n{out}\n{err}"


def _launchers(block: Block, tmp_path: pathlib.Path) -> None:
    """Each launcher's line runs where its launcher is installed (Hydra's mpiexec comes with the
    test extra on Linux x86-64); the others are checked against tests/test_launchers.py."""
    ran = 0
    for line in block.text.splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        tool = command.split()[0]
        if shutil.which(tool) is None:
            continue
        result = run_command(command.replace(" python ", f" {sys.executable} ", 1), ROOT, timeout=120)
        assert "INFO:root:Iteration 22 not enough players to continue." in result.stderr
        ran += 1
    if shutil.which("mpiexec") is None:
        pytest.skip("none of the launchers is installed here")
    assert ran >= 1


SHELLS: dict[str, Callable[[Block, pathlib.Path], None]] = {
    "cli-summary": _cli_summary,
    "tls-local": _tls_local,
    "tls-hosts": _tls_hosts,
    "launchers": _launchers,
}


@pytest.mark.processes
@pytest.mark.parametrize("block", blocks_of("shell"), ids=str)
def test_shell_blocks_run(block, tmp_path):
    SHELLS[block.name](block, tmp_path)


def _tls_run(block: Block, tmp_path: pathlib.Path) -> None:
    run_command("for r in 0 1 2; do cicada-async credentials --rank $r; done", tmp_path)
    script = tmp_path / "snippet.py"
    script.write_text("from cicada_async import AsyncSocketCommunicator\n" + PROGRAM + "\nresults = "
                      + block.text + "assert results == [[0, 1, 2]] * 3, results\n")
    run_command([sys.executable, str(script)], tmp_path)


def _testing(block: Block, tmp_path: pathlib.Path) -> None:
    (tmp_path / "test_snippet.py").write_text(block.text)
    result = run_command([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                          "-c", os.devnull, "--rootdir", str(tmp_path), "test_snippet.py"], tmp_path)
    assert "1 passed" in result.stdout, result.stdout


SCRIPTS: dict[str, Callable[[Block, pathlib.Path], None]] = {
    "connect": lambda block, tmp_path: None,  # run in-process by test_connect_block_forms_a_world
    "tls-run": _tls_run,
    "testing": _testing,
}


@pytest.mark.processes
@pytest.mark.parametrize("block", blocks_of("python"), ids=str)
def test_python_blocks_that_need_files_run(block, tmp_path):
    SCRIPTS[block.name](block, tmp_path)


# --- inline commands ------------------------------------------------------------------------------

INLINE = sorted(set(re.findall(r"`(python (?:examples|benchmarks)/[^`]+)`", README.read_text())))


@pytest.mark.processes
@pytest.mark.parametrize("command", [c for c in INLINE if c.startswith("python examples/")])
def test_inline_example_commands_run(command):
    run_command([sys.executable, *shlex.split(command)[1:]], ROOT)


@pytest.mark.parametrize("command", [c for c in INLINE if c.startswith("python benchmarks/")])
def test_inline_benchmark_commands_name_real_options(command):
    words = shlex.split(command)
    script = ROOT / words[1]
    assert script.is_file(), f"{command}: no such script"
    help_text = run_command([sys.executable, str(script), "--help"], ROOT, timeout=60).stdout
    for word in words[2:]:
        if word.startswith("--"):
            assert word.split("=")[0] in help_text, f"{command}: {word} is not an option of {words[1]}"
