"""A fact: what a host is asked (one read-only command), which exit codes are answers, and a pure parser.

    mounted = Fact("mounted", findmnt_cmd("/srv"), parse, answers=(0, 1))
    m, fstab = hc.facts(mounted, fstab_fact)      # one round trip, cached for the run

`HostContext.facts` asks every fact it does not know yet in one round trip
(`aegir.sh.Batch`), keeps the answers for the life of the context, and gives
back the parsed values in order; `HostContext.forget` drops them (after a
change). An exit code that is not an answer is a `CommandError` naming the
command. Parsers are pure: tested on recorded output, they never run anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aegir.errors import AegirError, CommandError
from aegir.sh import Cmd, Reply

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Fact(Generic[T]):
    """One read-only question to a host: `cmd`, the exit codes in `answers`, and `parse`.

    `answers=None` takes every exit code as an answer (the parser decides).
    `cache=False` for facts that must be asked afresh each time (they carry
    secrets, or change under the caller).
    """

    name: str
    cmd: Cmd
    parse: Callable[[Reply], T]
    answers: tuple[int, ...] | None = (0,)
    cache: bool = True

    @property
    def key(self) -> tuple[str, str]:
        """What the context caches it by: its name and its exact command line."""
        return self.name, self.cmd.line

    def read(self, reply: Reply, *, host: str) -> T:
        """The parsed answer, or `CommandError` when `reply`'s exit code is not an answer."""
        if self.answers is not None and reply.exited not in self.answers:
            raise CommandError(host, self.cmd.line, reply.exited, reply.stderr)
        try:
            return self.parse(reply)
        except AegirError as exc:
            raise exc.on(host) from None


# --------------------------------------------------------------------------- small text files


def cat_cmd(path: str) -> Cmd:
    """``cat -- PATH`` in the C locale: a small text file (exit 1 and a message: absent)."""
    return Cmd(("cat", "--", path), env={"LC_ALL": "C"})


def parse_cat(stdout: str, stderr: str, exited: int) -> str | None:
    """The file's text, None when it does not exist; raise on any other failure."""
    if exited == 0:
        return stdout
    if "No such file or directory" in stderr:
        return None
    raise AegirError(f"cannot read file: {stderr.strip() or f'cat exited {exited}'}")


def file_fact(path: str) -> Fact[str | None]:
    """The text of `path` on the host (None: absent)."""
    return Fact("file", cat_cmd(path), lambda r: parse_cat(r.stdout, r.stderr, r.exited), (0, 1), cache=False)
