"""The program behind ``inv`` and ``aegir``: Invoke's CLI with Fabric's connection flags.

It reads ``tasks.py`` from the current directory (or above) like stock
``inv``, and adds Fabric's ``-H/--hosts``, ``-i``, ``-S``, ``-t`` and
``--prompt-for-*`` flags (as ``fab`` spells them) plus ``--exclude``,
``--verbose`` and ``--inventory``. It is Invoke's `Program`, not Fabric's: Fabric
and paramiko are imported at the first SSH connection only (`aegir.host`), so
``inv --list`` and the tasks that do not connect never pay for them. Unlike ``fab``, ``-H`` does not
run the task once per host in series: it is handed to the task (as
``c.config.aegir.hosts``), which resolves it against the inventory and fans
out in parallel.

``--dry`` means "show the plan, change nothing": tasks still read facts from
the hosts (``c.run`` really runs) and stop before acting.
"""

from __future__ import annotations

import getpass
import os
import shlex
import sys

from invoke import Argument, Config, Executor, Exit, Program
from invoke.config import merge_dicts
from invoke.parser import Parser, ParserContext

from aegir import __version__, report

#: The fleet's defaults, under ``aegir`` in the config.
AEGIR_DEFAULTS: dict[str, object] = {"hosts": None, "exclude": None, "inventory": None, "dry": False, "parallel": 32, "verbose": False,
                  "remainder": []}


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
            "timeouts": {"connect": 10},  # seconds; -t or ssh_config ConnectTimeout override it
            "connect_kwargs": {},  # as Fabric's: -i, --prompt-for-* fill it
            "ssh_config_path": None,  # -S
            "aegir": dict(AEGIR_DEFAULTS),
        })


class NamesOrAll(ParserContext):
    """A task's parser context whose positional NAMES may be left out when ``--all`` is given
    (``inv apps.up cloud`` or ``inv apps.up --all``): Invoke has no optional positional arguments."""

    @property
    def missing_positional_args(self) -> list[Argument]:
        every = self.flags.get("--all")
        return [] if every is not None and every.value else super().missing_positional_args


class AegirProgram(Program):
    """Invoke's `Program` with Fabric's connection flags (as ``fab`` has them) and aegir's own."""

    def core_args(self) -> list[Argument]:
        args = super().core_args()
        for arg in args:
            if "dry" in arg.names:
                arg.help = "Show what would be done (facts are still read); change nothing."
        return args + [
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
            Argument(names=("verbose",), kind=bool, default=False,
                     help="Print the full text of table cells cut to fit the terminal, after the table."),
            Argument(names=("inventory",),
                     help="Inventory file (default: $AEGIR_INVENTORY, ./hosts.yml, /etc/aegir/hosts.yml)."),
        ]

    def parse_cleanup(self) -> None:
        """Invoke's, plus shell completion of host and group names after -H and --exclude."""
        if self.args.complete.value:
            words = host_completions(self.core.remainder, self.args.inventory.value)
            if words is not None:
                for word in words:
                    print(word)
                raise Exit
        super().parse_cleanup()

    def _make_parser(self) -> Parser:
        parser = super()._make_parser()
        for ctx in parser.contexts.values():
            if "--all" in ctx.flags and any(a.name == "names" for a in ctx.positional_args):
                ctx.__class__ = NamesOrAll
        return parser

    def remainder_argv(self) -> list[str]:
        """The words after a lone ``--``, as typed (Invoke's own ``core.remainder`` is one string
        joined with spaces, which loses the quoting: ``-- exec web sh -c 'echo a b'``)."""
        argv = list(self.argv or ())
        return argv[argv.index("--") + 1:] if "--" in argv else []

    def update_config(self) -> None:  # type: ignore[override]
        super().update_config(merge=False)
        verbose = bool(self.args.verbose.value)
        report.configure(verbose=verbose)
        dry = bool(self.args.dry.value)
        overrides = self.config._overrides
        overrides["aegir"] = {
            "hosts": self.args.hosts.value,
            "exclude": self.args.exclude.value,
            "inventory": self.args.inventory.value,
            "dry": dry,
            "verbose": verbose,
            "remainder": self.remainder_argv(),
        }
        if dry:  # aegir's --dry reads facts: commands still run, tasks stop before acting
            overrides.setdefault("run", {})["dry"] = False
        connect: dict = {}
        if self.args.identity.value:
            connect["key_filename"] = list(self.args.identity.value)
        if self.args["connect-timeout"].value:  # Connection wants it as timeouts.connect
            overrides["timeouts"] = {"connect": self.args["connect-timeout"].value}
        if self.args["prompt-for-login-password"].value:
            connect["password"] = getpass.getpass("Enter login password for use with SSH auth: ")
        if self.args["prompt-for-passphrase"].value:
            connect["passphrase"] = getpass.getpass("Enter passphrase for use unlocking SSH keys: ")
        overrides["connect_kwargs"] = connect
        if self.args["ssh-config"].value:
            overrides["ssh_config_path"] = self.args["ssh-config"].value
        self.config.merge()


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
    """Console entry point for ``inv`` and ``aegir``."""
    try:
        program.run()
    except BrokenPipeError:  # `inv --list | head` closed our stdout: not worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
