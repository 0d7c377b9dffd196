"""The ``cicada-async`` command line.

``python -m cicada_async`` and ``python -m cicada_async.cli`` are the same command line as the
``cicada-async`` console script (same arguments, output and exit codes).

Commands:

``run -n N program.py [args...]``
    Run the program's ``async def main(communicator)`` in N local player processes (as
    :meth:`AsyncSocketCommunicator.run` does).  The program is loaded in each player with
    ``runpy.run_path(path, run_name="__cicada_main__")``, so its ``if __name__ ==
    "__main__":`` block does not run; ``sys.argv`` is ``[program.py, *args]`` and the
    program's directory is first on ``sys.path``, as with ``python program.py``.  Exit code
    0 if every player's ``main`` returned, 1 otherwise (each failed player is reported on
    stderr).
``start --rank R --world-size N --root-address URL program.py [args...]``
    One player of a world whose players run on several hosts; unset options come from the
    ``CICADA_*`` environment variables.  The program is loaded before connecting.  Exit
    code 0 if ``main`` returned, 1 if connecting failed (a :class:`~cicada_async.TokenMismatch`
    or :class:`~cicada_async.AuthenticationError` included) or ``main`` raised.
``--trusted`` (``run`` and ``start``)
    Several certificate files may follow one ``--trusted`` (``--trusted a.cert b.cert
    prog.py``): the list ends at the first path ending in ``.py`` (the program), the next
    option or ``--``.  ``--trusted a.cert --trusted b.cert`` and ``--trusted a.cert,b.cert``
    work too.
``credentials --rank R``
    Write ``player-R.pem`` (private key and self-signed certificate, mode 0600) and
    ``player-R.cert`` (the certificate, for the other players to trust).
``certificate-info PATH``
    Describe a certificate; exit code 1 if it is expired or not yet valid.
``version``
    Print the version.

Bad arguments give one line on stderr (``cicada-async: error: ...``) and exit code 2; other
errors give one line and exit code 1 (``--debug`` shows the traceback).  ``run`` and
``start`` configure logging with ``logging.basicConfig(level=logging.WARNING)`` when the root
logger has no handlers, so the program's warnings and the library's are shown.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime
import inspect
import logging
import os
import runpy
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

__all__ = ["ProgramError", "main"]

PROG = "cicada-async"


class ProgramError(Exception):
    """The program given to ``run`` or ``start`` cannot be run (no ``async def main``, ...)."""


class _UsageError(Exception):
    """Bad command-line arguments: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.value_options: set[str] = set()  # option strings that take a value
        self.commands: dict[str, _Parser] = {}  # the commands whose options are rewritten by _trusted_lists

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.option_strings and action.nargs != 0:
            self.value_options.update(action.option_strings)
        return action

    def error(self, message: str) -> NoReturn:
        message = message.replace(", args", "")  # the program's arguments are optional
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# -- argument types ----------------------------------------------------------------------------
def _integer(text: str, *, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}, got {value}")
    return value


def _world_size(text: str) -> int:
    return _integer(text, minimum=1, what="the number of players")


def _rank(text: str) -> int:
    return _integer(text, minimum=0, what="the rank")


def _days(text: str) -> int:
    return _integer(text, minimum=1, what="the number of days")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _nonempty(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


# -- the parser --------------------------------------------------------------------------------
_FORMATTER = argparse.RawDescriptionHelpFormatter
_TRUSTED_HELP = ("trusted certificate file(s); for several, list them after one --trusted (the list ends at "
                 "the program, i.e. the first path ending in .py, or at the next option or --), repeat "
                 "the option, or separate them by commas; a pattern with {rank} names one file per player")


def _build_parser() -> _Parser:
    from . import __version__

    parser = _Parser(prog=PROG, formatter_class=_FORMATTER, allow_abbrev=False,
                     description="Run and set up cicada_async secure multiparty computations.",
                     epilog="Run 'cicada-async COMMAND --help' for the options of a command.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of unexpected errors")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of unexpected errors (and of failed players)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser(
        "run", parents=[common], formatter_class=_FORMATTER, allow_abbrev=False,
        help="run a program in N local player processes",
        description="Run the program's 'async def main(communicator)' in N local player processes.\n"
                    "Arguments after the program are the program's own (in sys.argv).",
        epilog="TLS: give both --identity and --trusted; '{rank}' in a pattern stands for a rank, e.g.\n"
               "  cicada-async run -n 3 --identity 'player-{rank}.pem' --trusted 'player-{rank}.cert' prog.py\n"
               "Exit code: 0 if every player's main returned, 1 if any raised or died.")
    run.add_argument("-n", "--world-size", dest="world_size", type=_world_size, required=True, metavar="N",
                     help="number of players")
    run.add_argument("--family", choices=("tcp", "file"), default="tcp",
                     help="link the players by loopback TCP (default) or Unix sockets")
    _add_common_options(run, startup_default=5.0)
    run.add_argument("--identity", metavar="PATTERN", type=_nonempty,
                     help="each player's identity file (key + certificate); must contain {rank} when N > 1")
    run.add_argument("--trusted", metavar="PATTERN", action="append", type=_nonempty,
                     help=_TRUSTED_HELP)
    _add_program(run)
    run.set_defaults(handler=_command_run)
    parser.commands["run"] = run

    start = commands.add_parser(
        "start", parents=[common], formatter_class=_FORMATTER, allow_abbrev=False,
        help="run one player of a world (players on several hosts)",
        description="Run one player: connect to the world by rendezvous with rank 0, then await the\n"
                    "program's 'async def main(communicator)'.  Options not given are taken from\n"
                    "CICADA_RANK, CICADA_WORLD_SIZE, CICADA_ROOT_ADDRESS, CICADA_ADDRESS, CICADA_IDENTITY,\n"
                    "CICADA_TRUSTED (comma-separated) and CICADA_TOKEN.",
        epilog="Example (on each of three hosts, with its own rank):\n"
               "  cicada-async start --rank 0 --world-size 3 --root-address tcp://10.0.0.1:25252 prog.py\n"
               "Rank 0 listens on the root address; the others listen on --address, by default on the\n"
               "interface that routes to rank 0 with a port chosen by the OS.  With TLS, e.g.:\n"
               "  cicada-async start --rank 1 ... --identity player-1.pem \\\n"
               "      --trusted player-0.cert player-1.cert player-2.cert prog.py\n"
               "Exit code: 0 if main returned, 1 if connecting failed (including a token mismatch\n"
               "or a refused certificate) or main raised, 2 for bad arguments.")
    start.add_argument("--rank", type=_rank, help="this player's rank")
    start.add_argument("--world-size", dest="world_size", type=_world_size, metavar="N", help="number of players")
    start.add_argument("--root-address", metavar="URL", help="rank 0's address, e.g. tcp://10.0.0.1:25252")
    start.add_argument("--address", metavar="URL", help="this player's listening address (default: see below)")
    start.add_argument("--identity", metavar="PATH", type=_nonempty,
                       help="this player's identity file (key + certificate); {rank} stands for the rank")
    start.add_argument("--trusted", metavar="PATH", action="append", type=_nonempty,
                       help=_TRUSTED_HELP)
    start.add_argument("--token", help="a value every player must give identically")
    _add_common_options(start, startup_default=30.0)
    _add_program(start)
    start.set_defaults(handler=_command_start)
    parser.commands["start"] = start

    credentials = commands.add_parser(
        "credentials", parents=[common], formatter_class=_FORMATTER, allow_abbrev=False,
        help="write a player's private key and self-signed certificate",
        description="Write player-R.pem (private key and certificate, mode 0600: keep it private) and\n"
                    "player-R.cert (the certificate: give it to the other players to trust), and print\n"
                    "their paths.  The certificate names the rank as the subjectAltName URI\n"
                    "urn:cicada-async:rank:R.")
    credentials.add_argument("--rank", type=_rank, required=True, help="the player's rank")
    credentials.add_argument("--days", type=_days, default=365, help="validity in days (default 365)")
    credentials.add_argument("--name", type=_nonempty,
                             help="certificate subject common name (default 'cicada-async player R')")
    credentials.add_argument("--directory", default=".", help="where to write the files (default: here)")
    credentials.add_argument("--force", action="store_true", help="replace existing files")
    credentials.set_defaults(handler=_command_credentials)

    info = commands.add_parser(
        "certificate-info", parents=[common], formatter_class=_FORMATTER, allow_abbrev=False,
        help="describe a certificate (.cert or identity .pem)",
        description="Print a certificate's subject, rank, validity and SHA-256 fingerprint.\n"
                    "Exit code: 0 if it is currently valid, 1 if expired or not yet valid.")
    info.add_argument("path", metavar="PATH", help="a .cert file, or an identity .pem file")
    info.set_defaults(handler=_command_certificate_info)

    version = commands.add_parser("version", parents=[common], help="print the version",
                                  description="Print the version of cicada_async.")
    version.set_defaults(handler=_command_version)
    return parser


def _add_common_options(parser: argparse.ArgumentParser, *, startup_default: float) -> None:
    parser.add_argument("--name", default="world", type=_nonempty, help="name of the world communicator")
    parser.add_argument("--timeout", type=_seconds, default=5.0, metavar="S",
                        help="the communicator's receive deadline in seconds (default 5)")
    parser.add_argument("--startup-timeout", dest="startup_timeout", type=_seconds, default=startup_default,
                        metavar="S", help=f"deadline for connecting, in seconds (default {startup_default:g})")


def _add_program(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", metavar="program.py", help="the program, defining 'async def main(communicator)'")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="args", help="the program's arguments")


def _trusted_lists(parser: _Parser, argv: Sequence[str]) -> list[str]:
    """Rewrite ``--trusted A B C prog.py`` as ``--trusted=A --trusted=B --trusted=C prog.py``.

    argparse gives an option one value here (the program and its arguments follow, as
    ``argparse.REMAINDER``), so several paths after one ``--trusted`` would make the second
    one the program.  After ``--trusted``, its first value is taken as before; further values
    are taken up to the first one ending in ``.py`` (the program), the next option or
    ``--``.  Only the options of ``run`` and ``start`` are rewritten, never the program's own
    arguments (everything from the program on is left as it is).
    """
    argv = list(argv)
    position = 0
    while position < len(argv) and argv[position].startswith("-") and argv[position] != "--":
        position += 1  # the options before the command (--debug)
    if position == len(argv) or argv[position] not in parser.commands:
        return argv
    command = parser.commands[argv[position]]
    result = argv[:position + 1]
    position += 1
    while position < len(argv):
        word = argv[position]
        if word == "--" or not word.startswith("-") or word == "-":
            break  # the program (or the end of the options): the rest is not ours
        if word == "--trusted" and position + 1 < len(argv) and not argv[position + 1].startswith("-"):
            result.append(f"--trusted={argv[position + 1]}")
            position += 2
            while (position < len(argv) and not argv[position].startswith("-")
                   and not argv[position].endswith(".py")):
                result.append(f"--trusted={argv[position]}")
                position += 1
            continue
        result.append(word)
        position += 1
        if word in command.value_options and position < len(argv):  # its value, whatever it looks like
            result.append(argv[position])
            position += 1
    return result + argv[position:]


# -- loading the program -----------------------------------------------------------------------
def _program_path(text: str) -> str:
    if not os.path.exists(text):
        raise _UsageError(f"program {text!r} not found")
    if os.path.isdir(text):
        raise _UsageError(f"program {text!r} is a directory, not a Python file")
    return os.path.abspath(text)


def _check_syntax(path: str) -> None:
    """Compile (without running) the program, so a syntax error is reported once, not per player."""
    try:
        with open(path, "rb") as stream:
            source = stream.read()
        compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise ProgramError(f"{path}, line {exc.lineno}: {exc.msg}") from None
    except (OSError, ValueError) as exc:
        raise ProgramError(f"cannot read program {path!r}: {exc}") from None


def _load_program(path: str, args: Sequence[str]) -> Callable[..., Any]:
    """Load the program as a module named ``__cicada_main__`` and return its ``main``."""
    sys.argv = [path, *args]
    directory = os.path.dirname(path)
    if sys.path[:1] != [directory]:
        sys.path.insert(0, directory)
    namespace = runpy.run_path(path, run_name="__cicada_main__")
    program_main = namespace.get("main")
    if program_main is None:
        raise ProgramError(f"{path} defines no 'async def main(communicator)'")
    if not inspect.iscoroutinefunction(program_main):
        raise ProgramError(f"'main' in {path} is not a coroutine function: define it as "
                           "'async def main(communicator)'")
    return program_main


def _exit_status(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


async def _program_main(communicator: Any, path: str, args: Sequence[str]) -> None:
    """A ``run`` player: load the program in this process and await its ``main``.

    The program's return value is discarded (it need not be picklable).  ``sys.exit()`` in
    the program ends the player: status 0 counts as success, anything else as a failure.
    """
    try:
        program_main = _load_program(path, args)
        await program_main(communicator)
    except SystemExit as exc:
        status = _exit_status(exc.code)
        if status != 0:
            raise ProgramError(f"{os.path.basename(path)} exited with status {status}") from None


# -- commands ----------------------------------------------------------------------------------
def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING)


def _split(values: Sequence[str] | None) -> list[str]:
    return [part for value in values or () for part in value.split(",") if part]


def _expand_trusted(patterns: Sequence[str] | None, world_size: int | None) -> list[str] | None:
    if patterns is None:
        return None
    files: list[str] = []
    for pattern in _split(patterns):
        if "{rank}" in pattern:
            if world_size is None:
                raise _UsageError(f"--trusted {pattern!r} contains {{rank}} but the world size is unknown")
            files.extend(pattern.replace("{rank}", str(rank)) for rank in range(world_size))
        else:
            files.append(pattern)
    if not files:
        raise _UsageError("--trusted names no file")
    return files


class _QuietLauncher(logging.Filter):
    """Drop the launcher's own report of failed players: the CLI prints its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.funcName == "run")


def _command_run(ns: argparse.Namespace) -> int:
    from .communicator import Failed, Terminated, launcher
    from .tls import tls_config

    path = _program_path(ns.program)
    world_size = ns.world_size
    identities = None
    trusted = None
    if (ns.identity is None) != (ns.trusted is None):
        raise _UsageError("TLS needs both --identity and --trusted")
    if ns.identity is not None:
        if "{rank}" not in ns.identity and world_size > 1:
            raise _UsageError("--identity must contain {rank} when there are several players "
                              "(each player needs its own certificate)")
        identities = [ns.identity.replace("{rank}", str(rank)) for rank in range(world_size)]
        trusted = _expand_trusted(ns.trusted, world_size)
        for rank, identity in enumerate(identities):
            tls_config(identity=identity, trusted=trusted, rank=rank)  # fail here, once, not in N players
    _check_syntax(path)
    _configure_logging()
    quiet = _QuietLauncher()
    launcher_log = logging.getLogger(launcher.__name__)
    launcher_log.addFilter(quiet)
    try:
        results = launcher.run(world_size=world_size, fn=_program_main, args=(path, list(ns.args)),
                               identities=identities, trusted=trusted, family=ns.family, name=ns.name,
                               timeout=ns.timeout, startup_timeout=ns.startup_timeout)
    finally:
        launcher_log.removeFilter(quiet)
    status = 0
    for rank, result in enumerate(results):
        if isinstance(result, Failed):
            status = 1
            print(f"{PROG}: player {rank} failed: {result!r}", file=sys.stderr)
            if getattr(ns, "debug", False) and result.traceback:
                print(result.traceback.rstrip(), file=sys.stderr)
        elif isinstance(result, Terminated):
            status = 1
            note = ""
            if isinstance(result.exitcode, int) and result.exitcode < 0:
                with contextlib.suppress(ValueError):
                    note = f" (killed by {signal.Signals(-result.exitcode).name})"
            print(f"{PROG}: player {rank} failed: {result!r}{note}", file=sys.stderr)
    return status


def _env_int(value: int | None, variable: str) -> int | None:
    if value is not None:
        return value
    with contextlib.suppress(TypeError, ValueError):
        return int(os.environ.get(variable))  # type: ignore[arg-type]
    return None


def _command_start(ns: argparse.Namespace) -> int:
    from .communicator import launcher

    path = _program_path(ns.program)
    rank = _env_int(ns.rank, "CICADA_RANK")
    world_size = _env_int(ns.world_size, "CICADA_WORLD_SIZE")
    if rank is None:  # started by mpiexec, mpirun, srun...: their variables say the rank
        from .communicator.connect import launched_defaults

        try:
            world_size, rank, ns.address, ns.root_address, ns.token, directory = launched_defaults(
                world_size=world_size, rank=None, address=ns.address,
                root_address=ns.root_address or os.environ.get("CICADA_ROOT_ADDRESS"), token=ns.token)
        except ValueError as exc:
            raise _UsageError(str(exc)) from None
        ns.rank, ns.world_size = rank, world_size
        if directory is not None:  # the job's socket directory: the last player out removes it
            atexit.register(_remove_empty_directory, directory)
    # Check what is needed to connect before loading the program (which may take a while).
    if rank is None:
        raise _UsageError("--rank is required (or set CICADA_RANK to an integer)")
    if world_size is None:
        raise _UsageError("--world-size is required (or set CICADA_WORLD_SIZE to an integer)")
    if not 0 <= rank < world_size:
        raise _UsageError(f"the rank must be in [0, {world_size}), got {rank}")
    if not (ns.root_address or os.environ.get("CICADA_ROOT_ADDRESS")):
        raise _UsageError("--root-address is required (or set CICADA_ROOT_ADDRESS)")
    identity = ns.identity
    if identity is not None and "{rank}" in identity:
        if rank is None:
            raise _UsageError("--identity contains {rank} but the rank is unknown")
        identity = identity.replace("{rank}", str(rank))
    trusted = _expand_trusted(ns.trusted, world_size)
    _configure_logging()
    try:
        program_main = _load_program(path, ns.args)
    except SystemExit as exc:  # e.g. the program printed its own --help
        return _exit_status(exc.code)
    with asyncio.Runner(loop_factory=launcher.loop_factory()) as runner:
        return runner.run(_start(ns, program_main, identity=identity, trusted=trusted))


def _remove_empty_directory(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


async def _start(ns: argparse.Namespace, program_main: Callable[..., Any], *, identity: str | None,
                 trusted: list[str] | None) -> int:
    from .communicator.connect import connect_world
    from .errors import CommunicatorError

    try:
        communicator = await connect_world(world_size=ns.world_size, rank=ns.rank, address=ns.address,
                                           root_address=ns.root_address, identity=identity, trusted=trusted,
                                           token=ns.token, name=ns.name, timeout=ns.timeout,
                                           startup_timeout=ns.startup_timeout)
    except CommunicatorError:  # connecting failed (TokenMismatch is also a ValueError): exit code 1
        raise
    except ValueError as exc:  # a missing or invalid option (or CICADA_* variable)
        raise _UsageError(str(exc)) from None
    try:
        await program_main(communicator)
    except Exception as exc:
        print(f"{PROG}: player {communicator.rank} failed: {_describe(exc)}", file=sys.stderr)
        if getattr(ns, "debug", False):
            traceback.print_exc()
        return 1
    finally:
        await communicator.endpoint.aclose(ns.timeout)
    return 0


def _command_credentials(ns: argparse.Namespace) -> int:
    from .tls import write_credentials

    if not os.path.isdir(ns.directory):
        raise _UsageError(f"directory {ns.directory!r} does not exist")
    if not ns.force:
        for suffix in ("pem", "cert"):
            existing = os.path.join(ns.directory, f"player-{ns.rank}.{suffix}")
            if os.path.lexists(existing):
                raise FileExistsError(f"{existing} already exists (use --force to replace it)")
    identity, certificate = write_credentials(ns.rank, ns.directory, days=ns.days, name=ns.name)
    print(identity)
    print(certificate)
    return 0


def _utc(moment: datetime.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _command_certificate_info(ns: argparse.Namespace) -> int:
    from .tls import RANK_URI, certificate_info

    info = certificate_info(ns.path)
    if info["rank"] is not None:
        rank = str(info["rank"])
    elif info["ranks"]:
        rank = f"invalid: names {info['ranks']} (-1 = malformed rank URI)"
    else:
        rank = f"none (no {RANK_URI.format(rank='N')} subjectAltName)"
    status = {"valid": "valid", "expired": "EXPIRED", "not yet valid": "not yet valid"}[info["status"]]
    issuer = "self-signed" if info["issuer"] == info["subject"] else info["issuer"]
    rows = [
        ("file", info["path"]),
        ("subject", info["subject"]),
        ("issuer", issuer),
        ("rank", rank),
        ("CA", "yes" if info["ca"] else "no"),
        ("not before", _utc(info["not_before"])),
        ("not after", _utc(info["not_after"])),
        ("sha256", info["sha256"]),
        ("status", status),
    ]
    for label, value in rows:
        print(f"{label + ':':<12}{value}")
    return 0 if info["valid"] else 1


def _command_version(ns: argparse.Namespace) -> int:
    from . import __version__

    print(__version__)
    return 0


# -- entry point -------------------------------------------------------------------------------
def _describe(exc: BaseException) -> str:
    from .errors import CommunicatorError

    text = " ".join(str(exc).split())
    if isinstance(exc, (CommunicatorError, ProgramError, OSError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error(message: str) -> None:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the ``cicada-async`` command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = _build_parser()
    arguments = _trusted_lists(parser, sys.argv[1:] if argv is None else argv)
    try:
        ns = parser.parse_args(arguments)
    except _UsageError as exc:
        _error(str(exc))
        return 2
    except SystemExit as exc:  # --help, --version
        return _exit_status(exc.code)
    if ns.command is None:
        _error("a command is required: run, start, credentials, certificate-info or version "
               f"(see '{PROG} --help')")
        return 2
    try:
        return ns.handler(ns)
    except _UsageError as exc:
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # the program called sys.exit()
        return _exit_status(exc.code)
    except Exception as exc:
        if ns.debug:
            traceback.print_exc()
        _error(_describe(exc))
        return 1


if __name__ == "__main__":  # ``python -m cicada_async.cli``: the same as the console script
    # Run the imported module's ``main``, not this ``__main__`` copy's, so what the players
    # are given (``_program_main``) is ``cicada_async.cli``'s, importable by any start method.
    from cicada_async.cli import main as _main

    sys.exit(_main())
