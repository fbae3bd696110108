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
import sys

from fabric import Config as FabricConfig
from fabric.main import Fab
from invoke import Argument, Executor
from invoke.config import merge_dicts

from aegir import __version__


class AegirConfig(FabricConfig):
    """Fabric's config with aegir's defaults: collection ``tasks``, files ``aegir.*``."""

    prefix = "aegir"

    @staticmethod
    def global_defaults() -> dict:
        defaults = FabricConfig.global_defaults()
        return merge_dicts(defaults, {
            "tasks": {"collection_name": "tasks"},
            "timeouts": {"connect": 10},  # seconds; -t or ssh_config ConnectTimeout override it
            "aegir": {"hosts": None, "inventory": None, "dry": False, "parallel": 32},
        })


class AegirProgram(Fab):
    """`fabric.main.Fab` with Invoke's executor (one run per task) and aegir's flags."""

    def core_args(self) -> list[Argument]:
        args = super().core_args()
        for arg in args:
            if "hosts" in arg.names:
                arg.help = ("Comma-separated inventory hosts, groups, or user@host:port "
                            "(default: the task's targets, usually every host).")
            if "dry" in arg.names:
                arg.help = "Show what would be done (facts are still read); change nothing."
        args.append(Argument(
            names=("inventory",),
            help="Inventory file (default: $AEGIR_INVENTORY, ./hosts.yml, /etc/aegir/hosts.yml).",
        ))
        return args

    def update_config(self) -> None:  # type: ignore[override]
        super().update_config()
        dry = bool(self.args.dry.value)
        self.config._overrides["aegir"] = {
            "hosts": self.args.hosts.value,
            "inventory": self.args.inventory.value,
            "dry": dry,
        }
        if dry:  # aegir's --dry reads facts: commands still run, tasks stop before acting
            self.config._overrides.setdefault("run", {})["dry"] = False
        timeout = self.config._overrides.get("connect_kwargs", {}).pop("timeout", None)
        if timeout:  # Fab puts -t in connect_kwargs; Connection wants it as connect_timeout
            self.config._overrides.setdefault("timeouts", {})["connect"] = timeout
        self.config.merge()


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
