"""The program behind ``inv`` and ``aegir``: Invoke's CLI with Fabric's connection flags.

It reads ``tasks.py`` from the current directory (or above) like stock
``inv``, and adds Fabric's ``-H/--hosts``, ``-i``, ``-S``, ``-t`` and
``--prompt-for-*`` flags plus ``--inventory``. Unlike ``fab``, ``-H`` does not
run the task once per host in series: it is handed to the task (as
``c.config.aegir.hosts``), which resolves it against the inventory and fans
out in parallel.

``--dry`` means "show the plan, change nothing": tasks still read facts from
the hosts (``c.run`` really runs) and stop before acting.
"""

from __future__ import annotations

import os
import shlex
import sys

from fabric import Config as FabricConfig
from fabric.main import Fab
from invoke import Argument, Executor, Exit
from invoke.config import merge_dicts

from aegir import __version__, report


class AegirConfig(FabricConfig):
    """Fabric's config with aegir's defaults: collection ``tasks``, files ``aegir.*``."""

    prefix = "aegir"

    @staticmethod
    def global_defaults() -> dict:
        defaults = FabricConfig.global_defaults()
        return merge_dicts(defaults, {
            "tasks": {"collection_name": "tasks"},
            "timeouts": {"connect": 10},  # seconds; -t or ssh_config ConnectTimeout override it
            "aegir": {"hosts": None, "exclude": None, "inventory": None, "dry": False, "parallel": 32},
        })


class AegirProgram(Fab):
    """`fabric.main.Fab` with Invoke's executor (one run per task) and aegir's flags."""

    def core_args(self) -> list[Argument]:
        args = super().core_args()
        for arg in args:
            if "hosts" in arg.names:
                arg.help = ("Comma-separated inventory hosts, groups, or user@host:port; "
                            "'!name' leaves a host or group out ('prod,!hyp3') "
                            "(default: the task's targets, usually every host).")
            if "dry" in arg.names:
                arg.help = "Show what would be done (facts are still read); change nothing."
        args.append(Argument(
            names=("exclude",),
            help="Comma-separated hosts or groups to leave out of the targets (as '!name' in -H).",
        ))
        args.append(Argument(
            names=("verbose",), kind=bool, default=False,
            help="Print the full text of table cells cut to fit the terminal, after the table.",
        ))
        args.append(Argument(
            names=("inventory",),
            help="Inventory file (default: $AEGIR_INVENTORY, ./hosts.yml, /etc/aegir/hosts.yml).",
        ))
        return args

    def parse_cleanup(self) -> None:
        """Invoke's, plus shell completion of host and group names after -H and --exclude."""
        if self.args.complete.value:
            words = host_completions(self.core.remainder, self.args.inventory.value)
            if words is not None:
                for word in words:
                    print(word)
                raise Exit
        super().parse_cleanup()

    def update_config(self) -> None:  # type: ignore[override]
        super().update_config()
        report.configure(verbose=bool(self.args.verbose.value))
        dry = bool(self.args.dry.value)
        self.config._overrides["aegir"] = {
            "hosts": self.args.hosts.value,
            "exclude": self.args.exclude.value,
            "inventory": self.args.inventory.value,
            "dry": dry,
        }
        if dry:  # aegir's --dry reads facts: commands still run, tasks stop before acting
            self.config._overrides.setdefault("run", {})["dry"] = False
        timeout = self.config._overrides.get("connect_kwargs", {}).pop("timeout", None)
        if timeout:  # Fab puts -t in connect_kwargs; Connection wants it as connect_timeout
            self.config._overrides.setdefault("timeouts", {})["connect"] = timeout
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
