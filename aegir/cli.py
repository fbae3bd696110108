"""The program behind ``inv`` and ``aegir``: Invoke's CLI with Fabric's connection flags.

It reads ``tasks.py`` from the current directory (or above) like stock
``inv``, and adds Fabric's ``-H/--hosts``, ``-i``, ``-S``, ``-t`` and
``--prompt-for-*`` flags (as ``fab`` spells them) plus ``--exclude`` and
``--inventory``. It is Invoke's `Program`, not Fabric's: Fabric
and paramiko are imported at the first SSH connection only (`aegir.host`), so
``inv --list`` and the tasks that do not connect never pay for them. Unlike ``fab``, ``-H`` does not
run the task once per host in series: it is handed to the task (as
``c.config.aegir.hosts``), which resolves it against the inventory and fans
out in parallel.

``--dry`` means "show the plan, change nothing": tasks still read facts from
the hosts (``c.run`` really runs) and stop before acting.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shlex
import sys
from collections.abc import Iterator, Sequence

from invoke import Argument, Config, Executor, Exit, Program
from invoke.config import merge_dicts
from invoke.exceptions import CollectionNotFound, ParseError, UnexpectedExit
from invoke.parser import Parser, ParserContext

from aegir import __version__, report
from aegir.errors import did_you_mean
from aegir.tasks.flags import COUNT, PROGRAM_LETTERS, Bound, FlagError, count

#: Exit code of a usage error (as `aegir.tasks.base.EXIT_USAGE`).
EXIT_USAGE = 2
SECONDS_INT = count(1, "SECONDS")

#: The fleet's defaults, under ``aegir`` in the config.
AEGIR_DEFAULTS: dict[str, object] = {"hosts": None, "exclude": None, "inventory": None, "dry": False, "parallel": 32,
                                     "processes": None, "process_hosts": 250, "remainder": []}


class AegirConfig(Config):
    """Invoke's config with aegir's defaults: collection ``tasks``, files ``aegir.*``, Fabric's connection keys.

    It is a plain Invoke config so that a task that never connects never
    imports Fabric or paramiko: `aegir.host` turns it into Fabric's (with the
    operator's ssh_config) at the first SSH connection.
    """

    prefix = "aegir"

    @staticmethod
    def global_defaults() -> dict:
        return merge_dicts(Config.global_defaults(), {
            "tasks": {"collection_name": "tasks"},
            # seconds (aegir.host.Deadlines): -t or ssh_config ConnectTimeout override connect, -T command;
            # any of them from aegir.yaml or the environment (AEGIR_TIMEOUTS_SILENT=5)
            "timeouts": {"connect": 10, "command": 600.0, "compose": 300.0, "docker": 60.0, "silent": 15.0,
                         "keepalive": 5.0, "interrupt": 3.0},
            "connect_kwargs": {},  # as Fabric's: -i, --prompt-for-* fill it
            "ssh_config_path": None,  # -S
            "aegir": dict(AEGIR_DEFAULTS),
        })


class AegirContext(ParserContext):
    """Invoke's parser context, with each flag's value shown by its kind in --help (``--warn=PCT``, never a
    value-taking flag shown bare), and positional NAMES that may be left out when ``--all`` is given
    (``inv apps.up cloud`` or ``inv apps.up --all``): Invoke has no optional positional arguments."""

    @property
    def missing_positional_args(self) -> list[Argument]:
        every = self.flags.get("--all")
        return [] if every is not None and every.value else super().missing_positional_args

    def help_for(self, flag: str) -> tuple[str, str]:
        arg = self.flags[flag]
        value = metavar(arg)
        names = []
        for name in sorted(self.names_for(flag), key=lambda n: (len(n), n.lower())):
            if value and arg.optional:
                names.append(f"{name} [{value}]" if len(name.strip("-")) == 1 else f"{name}[={value}]")
            elif value:
                names.append(f"{name} {value}" if len(name.strip("-")) == 1 else f"{name}={value}")
            else:
                names.append(name)
        return ", ".join(names), arg.help or ""


def program_letters(args: list[Argument]) -> list[Argument]:
    """The program's flags with their letters from `PROGRAM_LETTERS` (one meaning per letter, before or after
    the task name) and typed numbers (``-t x`` is one line, not a traceback)."""
    for arg in args:
        long = next(n for n in arg.names if len(n) > 1)
        arg.names = (long, *sorted(letter for letter, name in PROGRAM_LETTERS.items() if name == long))
        if long == "dry":
            arg.help = "Show what would be done (facts are still read); change nothing (-d, -R or --dry, " \
                       "before or after the task name)."
        if arg.kind is int:
            arg.kind = Bound(SECONDS_INT if long.endswith("timeout") else COUNT, f"--{long}")
    return args


def metavar(arg: Argument) -> str | None:
    """What --help shows after a flag that takes a value (None: a bare flag)."""
    if not arg.takes_value:
        return None
    if isinstance(arg.kind, Bound):
        return arg.kind.kind.metavar
    return {list: "VALUE", int: "INT"}.get(arg.kind, "STRING")


class AegirProgram(Program):
    """Invoke's `Program` with Fabric's connection flags (as ``fab`` has them) and aegir's own."""

    def core_args(self) -> list[Argument]:
        return program_letters(super().core_args() + self.aegir_args())

    def task_args(self) -> list[Argument]:
        return program_letters(super().task_args())

    @property
    def initial_context(self) -> ParserContext:
        context = super().initial_context
        context.__class__ = AegirContext
        return context

    def aegir_args(self) -> list[Argument]:
        """Fabric's connection flags (as ``fab`` spells them) and aegir's own."""
        return [
            Argument(names=("H", "hosts"),
                     help="Comma-separated inventory hosts, groups, or user@host:port; "
                          "'!name' leaves a host or group out ('prod,!hyp3') "
                          "(default: the task's targets, usually every host)."),
            Argument(names=("exclude",),
                     help="Comma-separated hosts or groups to leave out of the targets (as '!name' in -H)."),
            Argument(names=("i", "identity"), kind=list,
                     help="Path to runtime SSH identity (key) file. May be given multiple times."),
            Argument(names=("prompt-for-login-password",), kind=bool,
                     help="Request an upfront SSH-auth password prompt."),
            Argument(names=("prompt-for-passphrase",), kind=bool,
                     help="Request an upfront SSH key passphrase prompt."),
            Argument(names=("S", "ssh-config"), help="Path to runtime SSH config file."),
            Argument(names=("t", "connect-timeout"), kind=int,
                     help="Specifies default connection timeout, in seconds."),
            Argument(names=("inventory",),
                     help="Inventory file (default: $AEGIR_INVENTORY, ./hosts.yml, /etc/aegir/hosts.yml)."),
        ]

    def parse_core(self, argv: list[str] | None) -> None:
        with self.usage_errors():
            super().parse_core(argv)

    def parse_tasks(self) -> None:
        with self.usage_errors():
            self._help_after_task()
            super().parse_tasks()

    def _help_after_task(self) -> None:
        """``inv TASK --help`` is ``inv --help TASK``, also for a task that takes NAMES: Invoke's parser gives
        the word to the task's first missing positional argument ("invalid project name '--help'"). The
        task is the last task name before the flag (``-h`` too, unless the task has a ``-h`` of its own);
        nothing after ``--`` counts."""
        argv = list(self.core.unparsed)
        end = argv.index("--") if "--" in argv else len(argv)
        if not {"--help", "-h"} & set(argv[:end]):
            return
        contexts = self._make_parser().contexts
        task = None
        for word in argv[:end]:
            if word in contexts:
                task = word
            elif task is not None and (word == "--help" or (word == "-h" and "-h" not in contexts[task].flags)):
                self.args.help.value = task
                self.core.unparsed = []
                return

    def parse_cleanup(self) -> None:
        """Invoke's, plus shell completion of host and group names after -H and --exclude."""
        if self.args.complete.value:
            words = host_completions(self.core.remainder, self.args.inventory.value)
            if words is not None:
                for word in words:
                    report.say(word)
                raise Exit
        with self.usage_errors():
            try:
                super().parse_cleanup()
            except Exit as exc:  # --list NAMESPACE that is not one
                root = self.args.list.value
                if exc.code == 1 and isinstance(root, str) and root not in self.collection.collections:
                    raise Exit(f"aegir: --list: no namespace {root!r}{did_you_mean(root, self.collection.collections)}; "
                               f"namespaces: {', '.join(sorted(self.collection.collections))}",
                               code=EXIT_USAGE) from None
                raise

    @contextlib.contextmanager
    def usage_errors(self) -> Iterator[None]:
        """Invoke's parse errors (unknown task or flag, missing argument or value, a value its kind refuses)
        as one line ``aegir: ...`` and exit 2, never Invoke's own words and exit 1, never a traceback."""
        try:
            yield
        except ParseError as exc:
            parser = getattr(self, "parser", None)
            contexts = parser.contexts if parser is not None else {}
            raise Exit(usage_line(exc, contexts, self.initial_context, list(self.argv or ())),
                       code=EXIT_USAGE) from None

    def execute(self) -> None:
        """Invoke's; a command a task ran through Invoke's own ``c.run`` that failed unchecked (a bug: aegir's
        commands go through `aegir.sh`) ends in one line and exit 1, not with the command's exit code, which
        could read as a usage error (2)."""
        try:
            super().execute()
        except UnexpectedExit as exc:
            result = exc.result
            raise Exit(f"aegir: {report.printable(result.command)} exited {result.exited}", code=1) from None

    def load_collection(self) -> None:
        """Invoke's (``tasks.py`` from the current directory up, or -c/-r), or aegir's own tasks when no
        ``tasks.py`` is found and none was asked for: ``aegir`` works from any folder."""
        name, root = self.args.collection.value, self.args["search-root"].value
        if name is None and root is None:
            loader = self.loader_class(config=self.config, start=root)  # type: ignore[call-arg]
            try:
                found = loader.find(self.config.tasks.collection_name)
            except CollectionNotFound:
                found = None
            if found is None:
                from aegir.tasks import namespace

                self.collection = namespace
                return
        try:
            super().load_collection()
        except Exit as exc:  # -c NAME or -r DIR that holds no such collection
            if exc.code == 1 and str(exc.message).startswith("Can't find any collection"):
                raise Exit(f"aegir: no collection {name or self.config.tasks.collection_name!r} found from "
                           f"{root or os.getcwd()} up (-c, -r; without them, aegir's own tasks)",
                           code=EXIT_USAGE) from None
            raise

    def _make_parser(self) -> Parser:
        parser = super()._make_parser()
        for ctx in parser.contexts.values():
            ctx.__class__ = AegirContext
            for arg in ctx.args.values():
                if isinstance(arg.kind, Bound):  # its refusals name the task: "disk.report --top: ..."
                    arg.kind = arg.kind.at(ctx.name)
        return parser

    def remainder_argv(self) -> list[str]:
        """The words after a lone ``--``, as typed (Invoke's own ``core.remainder`` is one string
        joined with spaces, which loses the quoting: ``-- exec web sh -c 'echo a b'``)."""
        argv = list(self.argv or ())
        return argv[argv.index("--") + 1:] if "--" in argv else []

    def update_config(self) -> None:  # type: ignore[override]
        super().update_config(merge=False)
        report.configure()
        dry = bool(self.args.dry.value)
        overrides = self.config._overrides
        overrides["aegir"] = {
            "hosts": self.args.hosts.value,
            "exclude": self.args.exclude.value,
            "inventory": self.args.inventory.value,
            "dry": dry,
            "remainder": self.remainder_argv(),
        }
        if dry:  # aegir's --dry reads facts: commands still run, tasks stop before acting
            overrides.setdefault("run", {})["dry"] = False
        connect: dict = {}
        if self.args.identity.value:
            connect["key_filename"] = list(self.args.identity.value)
        if self.args["connect-timeout"].value:  # Connection wants it as timeouts.connect (-T's command kept)
            overrides.setdefault("timeouts", {})["connect"] = self.args["connect-timeout"].value
        if self.args["prompt-for-login-password"].value:
            connect["password"] = getpass.getpass("Enter login password for use with SSH auth: ")
        if self.args["prompt-for-passphrase"].value:
            connect["passphrase"] = getpass.getpass("Enter passphrase for use unlocking SSH keys: ")
        overrides["connect_kwargs"] = connect
        if self.args["ssh-config"].value:
            overrides["ssh_config_path"] = self.args["ssh-config"].value
        self.config.merge()


def usage_line(err: ParseError, contexts: dict[str, ParserContext], initial: ParserContext,
               argv: Sequence[str]) -> str:
    """One line ``aegir: ...`` for an Invoke parse error: what is wrong, the task and the flag, what would do
    ("did you mean", the accepted values, ``--all``)."""
    if isinstance(err, FlagError):
        return str(err)
    msg, ctx = str(err), err.context
    task = ctx.name if ctx is not None and ctx.name else None
    if m := re.fullmatch(r"No idea what '(.*)' is!", msg, re.S):
        return _unknown(m[1], ctx if task else None, contexts, initial, argv)
    if (m := re.fullmatch(r"'(.*)' did not receive required positional arguments: .*", msg, re.S)) and ctx:
        return _missing(m[1], ctx)
    if m := re.fullmatch(r"Flag <\w+: (\S+?)[ >].* needed value and was not given one!", msg, re.S):
        ours = ctx.args.get(m[1]) if ctx is not None and task else None
        arg = ours or initial.args.get(m[1])
        if arg is not None:
            flag = "--" + next(n for n in arg.names if len(n) > 1)
            accepts = f": {arg.kind.kind.accepts}" if isinstance(arg.kind, Bound) else ""
            return f"aegir: {f'{task} ' if ours else ''}{flag} needs a value{accepts}"
    return f"aegir: {task + ': ' if task else ''}{msg}"


def _unknown(word: str, ctx: ParserContext | None, contexts: dict[str, ParserContext], initial: ParserContext,
             argv: Sequence[str]) -> str:
    """An unknown task, flag or extra word (`ctx`: the task it came after, if any)."""
    if word.startswith("-"):
        flag = word.split("=", 1)[0]
        if ctx is not None:
            return (f"aegir: {ctx.name} has no flag {flag}{did_you_mean(flag, [*ctx.flags, *initial.flags])}; "
                    f"inv --help {ctx.name} lists its flags")
        owners = [t for t in argv if t in contexts and flag in contexts[t].flags]
        if owners:
            return f"aegir: {flag} is a flag of {owners[0]}, not of the program: put it after the task name"
        return (f"aegir: unknown program flag {flag}{did_you_mean(flag, initial.flags)}; "
                "inv --help lists the program's flags, inv --help TASK a task's")
    names = sorted(contexts)
    if ctx is not None and "." not in word and not did_you_mean(word, names):
        given = next((a.value for a in ctx.positional_args if a.name == "names" and a.value), None)
        hint = f" (give several names comma-separated: {given},{word})" if given else ""
        return f"aegir: {ctx.name}: unexpected argument {word!r}{hint}; inv --help {ctx.name} shows its usage"
    within = [n for n in names if n.startswith(word + ".")]
    if within:
        return f"aegir: {word!r} is a namespace, not a task: {', '.join(within)}"
    return f"aegir: no task {word!r}{did_you_mean(word, names)}; inv --list shows them"


def _missing(task: str, ctx: ParserContext) -> str:
    """A task's positional arguments that were not given."""
    missing = ctx.missing_positional_args
    if "--all" in ctx.flags and any(a.name == "names" for a in missing):
        return f"aegir: {task}: name the projects (NAMES: cloud or cloud,users/wiki) or give --all"
    words = [metavar(a) if a.name == "names" else str(a.name).upper() for a in ctx.positional_args]
    flags = " and ".join(f"--{a.names[0]}" for a in missing)
    return f"aegir: {task} needs {flags}: inv {task} {' '.join(str(w) for w in words)}"


#: The flags whose value is a list of inventory hosts and groups.
HOST_FLAGS = ("-H", "--hosts", "--exclude")


def host_completions(remainder: str, inventory: str | None) -> list[str] | None:
    """Host and group names when the word being completed is the value of a `HOST_FLAGS` flag, else None.

    `remainder` is what the shell hands ``--complete``: the command line up to the
    cursor (``inv -H prod,!hy``; bash splits ``--hosts=x`` into ``--hosts = x``).
    An inventory that cannot be read completes nothing (never a traceback in a shell).
    """
    from aegir.errors import AegirError
    from aegir.inventory import load

    try:
        tokens = [t for t in shlex.split(remainder) if t != "="]
    except ValueError:
        return None
    if tokens and tokens[-1] in HOST_FLAGS:
        word = ""
    elif len(tokens) >= 2 and tokens[-2] in HOST_FLAGS:
        word = tokens[-1]
    else:
        return None
    try:
        return [w for w in load(inventory).completions(word) if w.startswith(word)]
    except AegirError:
        return []


def make_program() -> AegirProgram:
    return AegirProgram(
        name="aegir",
        binary="inv",
        binary_names=["inv", "aegir"],
        version=__version__,
        executor_class=Executor,
        config_class=AegirConfig,
    )


program = make_program()


def main() -> None:
    """Console entry point for ``inv`` and ``aegir``.

    Ctrl-C (`aegir.interrupt`): exit 130; when running steps were abandoned, the process
    ends at once (their threads are not waited for).
    """
    from aegir.interrupt import EXIT_INTERRUPTED, RUN, install

    install()
    code: int | str | None = 0
    try:
        program.run()
    except BrokenPipeError:  # `inv --list | head` closed our stdout: not worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    except SystemExit as exc:
        code = exc.code
    if RUN.count:
        if code != EXIT_INTERRUPTED:  # Ctrl-C outside a fleet run (a prompt): Invoke exited 1 without a word
            report.say("aegir: interrupted (Ctrl-C)", err=True)
        code = EXIT_INTERRUPTED
    if RUN.abandoned:  # threads still wait on abandoned hosts: do not wait for them at exit
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code if isinstance(code, int) else 1)
    sys.exit(code)
