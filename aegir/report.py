"""Output: tables on stdout (tabulate), JSON for scripts, progress on stderr.

Every report goes through `emit`: ``--format table`` (default) prints one
table per section, ``--format json`` prints the same data as one JSON
document. Progress goes to stderr only, and only when work lasts more than a
second, so a quick report prints nothing but its table.

This module is the one sink of the terminal: every character aegir writes there
leaves through `emit`, `say`, `warn`, `ask`, `Progress` or `Escaping`, each of
which passes it through `printable` (JSON escapes its own text), so text from a
host cannot act on the terminal however it reached the message. The guard test
(tests/unit/test_guard.py, ``raw_output``) counts every ``print``, ``input`` and
``sys.stdout/stderr.write`` elsewhere.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any, Protocol, TextIO

from aegir.poll import Background

FORMATS = ("table", "json")
FORMAT_HELP = "Output format: 'table' (default) or 'json'."

_UNITS = ("B", "K", "M", "G", "T", "P")


class Result(StrEnum):
    """What an action did on one item, in every table and JSON report (one spelling each).

    ``would``: the plan under ``--dry`` (or a step that waits for an earlier one).
    """

    OK = "ok"  # nothing to do: already so
    DONE = "done"
    WOULD = "would"
    SKIPPED = "skipped"
    FAILED = "failed"


def check_format(fmt: str, extra: Sequence[str] = ()) -> str:
    """Validate a ``--format`` value: `FORMATS` or the task's `extra` ones (`UsageError`, exit 2).

    The program already refuses a bad value when it parses the command line
    (`aegir.tasks.flags.formats`); this guards the tasks' own callers."""
    from aegir.errors import UsageError

    accepted = (*FORMATS, *extra)
    if fmt not in accepted:
        raise UsageError(f"--format must be one of {', '.join(accepted)}, not {fmt!r}")
    return fmt


def human(n: int | float | None) -> str:
    """Bytes as a short IEC size: ``human(1536) == '1.5K'``; None -> '-'."""
    if n is None:
        return "-"
    size = float(n)
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(size)}B"
            return f"{size:.1f}{unit}" if abs(size) < 10 else f"{size:.0f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


def age(seconds: float | None) -> str | None:
    """A duration as one short word, rounded down: ``age(93784) == '1d'``, ``age(3700) == '1h'``,
    ``age(59) == '59s'``. None -> None (unknown)."""
    if seconds is None:
        return None
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


#: The width of tables and of aegir's own lines when stdout is not a terminal and $COLUMNS is unset.
DEFAULT_WIDTH = 80
#: No column is narrowed below this (or its header's longest word, or its widest cell if narrower).
MIN_COLUMN = 8
#: A column keeps its longest unbreakable word (a version, a path part, a host name) whole up to this width.
WORD_KEPT = 24
_GAP = 2  # tabulate's 'simple' style puts two spaces between columns


@dataclass
class Display:
    """How wide tables and aegir's own lines are: set once by the program (`configure`); None (no limit)
    until then, as the renderers' unit tests see it."""

    width: int | None = None


display = Display()


def configure(*, stream: TextIO | None = None) -> None:
    """Set `display.width` for this run: ``$COLUMNS``, else the width of `stream`'s terminal (default stdout),
    else `DEFAULT_WIDTH` (a pipe, a file, cron's mail: tables are for people; ``--format json`` is for scripts)."""
    import os

    display.width = DEFAULT_WIDTH
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        display.width = int(env)
        return
    stream = stream or sys.stdout
    try:
        if stream.isatty():
            display.width = os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH
    except (OSError, ValueError, AttributeError):
        pass


#: Characters a terminal acts on rather than shows (C0 and C1 controls but newline and tab, DEL,
#: bidirectional marks, embeddings, overrides and isolates), and lone surrogates (a byte that was not UTF-8,
#: kept by ``surrogateescape``; it could not even be written to a UTF-8 stream): text from a host (stderr,
#: compose output, apt lines, folder names) is shown escaped.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character a terminal would act on written as an escape (``\\x1b``,
    ``\\u202e``); newlines and tabs are kept (a ruleset stays a ruleset). Valid text of any script is left
    as it is; a byte that was not UTF-8 is shown as ``\\xNN`` when it was kept (``surrogateescape``), as
    U+FFFD when the decoder replaced it (Invoke's and Docker's: both decode with "replace")."""
    return _CONTROLS.sub(_escape, text)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, width: int | None = None) -> str:
    """A plain-text table (tabulate's 'simple' style), '-' for missing cells, that fits `width` columns.

    `width` defaults to `display.width`. When the table is wider, the widest
    columns are narrowed and their cells wrapped (`wrap`), whole: nothing is
    ever cut, so an error reason, a command or a path is shown in full over as
    many lines as it needs. Only a table whose columns cannot all keep
    `MIN_COLUMN` characters runs past `width`.
    """
    import tabulate

    tabulate.MIN_PADDING = 0  # a column as wide as its header, not two more: 16 columns back in a table of 8
    cells = [["-" if v is None else printable(str(v)) for v in r] for r in rows]
    heads = list(headers)
    width = display.width if width is None else width
    if width and cells:
        limits = _fit(heads, cells, width)
        heads = [h if len(h) <= limits[i] else wrap(h, limits[i]) for i, h in enumerate(heads)]
        cells = [[wrap(v, limits[i]) if _widest(v) > limits[i] else v for i, v in enumerate(r)] for r in cells]
    return tabulate.tabulate(cells, headers=heads, tablefmt="simple", disable_numparse=True)


def _widest(cell: str) -> int:
    return max((len(line) for line in cell.splitlines()), default=0)


def _fit(headers: Sequence[str], cells: Sequence[Sequence[str]], width: int) -> list[int]:
    """Per column, its width once the table is made to fit `width`.

    Headers wrap at their spaces first; then the widest columns give way, each
    keeping, while the table can afford it, its longest unbreakable word (up to
    `WORD_KEPT`), its header's longest word and `MIN_COLUMN`; the first column
    (the host, or what names the row) keeps up to 32.
    """
    n = max(len(headers), *(len(r) for r in cells))
    heads = [*headers, *[""] * (n - len(headers))]
    column = [[r[i] for r in cells if i < len(r)] for i in range(n)]
    widest = [max(map(_widest, col), default=0) for col in column]
    word = [max((len(w) for w in heads[i].split()), default=0) for i in range(n)]
    token = [min(WORD_KEPT, max((len(t) for v in col for line in v.splitlines() for t in _chunks(line)), default=0))
             for col in column]
    budget = width - _GAP * (n - 1)
    natural = [max(len(heads[i]), widest[i]) for i in range(n)]
    if sum(natural) <= budget:
        return natural
    natural = [max(word[i], widest[i]) for i in range(n)]  # headers wrapped
    if sum(natural) <= budget:
        return natural
    floors = [[max(MIN_COLUMN, word[i], token[i]) for i in range(n)], [max(MIN_COLUMN, word[i]) for i in range(n)]]
    floors = [[min(natural[i], f[i]) for i in range(n)] for f in floors]
    floors = [[max(f[0], min(natural[0], 32)), *f[1:]] for f in floors] + floors
    floor = next((f for f in floors if sum(f) <= budget), floors[-1])

    def total(cap: int) -> int:
        return sum(max(floor[i], min(natural[i], cap)) for i in range(n))

    low, high = 0, max(natural)  # the largest cap that fits
    while low < high:
        mid = (low + high + 1) // 2
        if total(mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return [max(floor[i], min(natural[i], low)) for i in range(n)]


def _chunks(line: str) -> list[str]:
    """`line` cut where it may wrap: after spaces, after a '/' (but a path's first), after a '-' between two
    letters or digits but in an option (``/srv/apps/my-app --project-name`` -> ``/``, ``srv/``, ``apps/``, ``my-``, ``app``,
    `` ``, ``--project-name``)."""
    out: list[str] = []
    cur = ""
    option = False  # the word being read starts with '-': an option, kept whole
    for i, ch in enumerate(line):
        if cur and ch.isspace() != cur[-1].isspace():
            out.append(cur)
            cur = ""
        if not ch.isspace() and (i == 0 or line[i - 1].isspace()):
            option = ch == "-"
        cur += ch
        nxt = line[i + 1] if i + 1 < len(line) else ""
        if (ch == "/" and i > 0 and not line[i - 1].isspace() and nxt and not nxt.isspace() and nxt != "/") or (
                ch == "-" and not option and i > 0 and line[i - 1].isalnum() and nxt.isalnum()):
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out


def wrap(text: str, width: int | None = None, indent: str = "") -> str:
    """`text` in lines of at most `width` characters (default `display.width`), each of its lines wrapped at
    spaces, after '/' and after a '-' inside a word (`_chunks`); only a word wider than a line is split.
    Nothing is dropped but the spaces where a line breaks. Continuation lines start with `indent`."""
    width = display.width if width is None else width
    if not width:
        return text
    out: list[str] = []
    for line in text.splitlines() or [""]:
        cur = ""
        for n, chunk in enumerate(_chunks(line)):
            if chunk.isspace():
                if cur or n == 0:  # a line's own indentation stays
                    cur += chunk
                continue
            if cur.strip() and len(cur) + len(chunk) > width:
                out.append(cur.rstrip())
                cur = indent
            while len(cur) + len(chunk) > width:  # the last resort: a word wider than a line
                cut = max(1, width - len(cur))
                out.append(cur + chunk[:cut])
                cur, chunk = indent, chunk[cut:]
            cur += chunk
        out.append(cur.rstrip())
    return "\n".join(out)


class HostResult(Protocol):
    """What a report needs of a `aegir.fleet.Outcome`: the host, ok or why not."""

    @property
    def host(self) -> Any: ...  # aegir.inventory.Host

    @property
    def kind(self) -> str: ...  # ok | unreachable | failed | bug

    @property
    def error(self) -> str | None: ...


def host_entry(o: HostResult, **fields: Any) -> dict[str, Any]:
    """One host of a report's JSON: ``{"host", "status", "error", **fields}`` (status: ok, unreachable, failed, bug)."""
    return {"host": o.host.name, "status": o.kind, "error": o.error, **fields}


def warning(host: str | None, text: str) -> str:
    """The one spelling of a warning line: ``warning: HOST: text`` (``warning: text`` for the fleet)."""
    return f"warning: {host}: {text}" if host else f"warning: {text}"


def envelope(task: str, results: Sequence[HostResult], fields: Callable[[Any], dict[str, Any]], *,
             dry: bool | None = None, summary: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The one JSON document of every task: ``{"task", "dry", "hosts": [{"host", "status", "error", ...}],
    "summary": {...}}`` plus `extra` keys; `fields(result)` gives each host's own keys (also for a failed host)."""
    return {"task": task, "dry": dry, "hosts": [host_entry(r, **fields(r)) for r in results],
            "summary": summary or {}, **extra}


def failed_row(o: HostResult, width: int, *, at: int = -1, reason_at: int | None = None) -> list[Any]:
    """The table row of a host that failed or could not be reached: its name, empty cells, why.

    Column `at` says ``UNREACHABLE: reason``; or, with `reason_at`, column `at`
    holds the kind (``UNREACHABLE``) and column `reason_at` the reason.
    """
    row: list[Any] = [o.host.name, *([None] * (width - 1))]
    if reason_at is None:
        row[at] = f"{o.kind.upper()}: {o.error}"
    else:
        row[at], row[reason_at] = o.kind.upper(), o.error
    return row


def failed_line(o: HostResult) -> str:
    """``hyp2: UNREACHABLE: reason``: a failed host's row (`failed_row`) as one line of a text report, escaped."""
    return printable(": ".join(map(str, failed_row(o, 2))))


def jsonable(obj: Any) -> Any:
    """Dataclasses, tuples, addresses -> plain JSON values."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (IPv4Address, IPv6Address, IPv6Network)):
        return str(obj)
    return obj


def dumps(obj: Any) -> str:
    """Stable, indented JSON of `obj` (see `jsonable`)."""
    return json.dumps(jsonable(obj), indent=2, sort_keys=False, default=str)


def emit(fmt: str, *, data: Any, text: str, out: TextIO | None = None, verbatim: bool = False) -> None:
    """Print `text` (table format) or `data` as JSON, on stdout.

    A line of `text` wider than `display.width` (a warning, a summary) is
    wrapped (`wrap`, continuation lines indented), unless `verbatim`: text another
    program reads (a ruleset, a zone, a diff, a unit file) is printed as it is."""
    out = out or sys.stdout
    if fmt == "json":
        print(dumps(data), file=out)  # json.dumps writes every control and non-ASCII character as \\uXXXX
        out.flush()
        return
    text = printable(text)  # tables escape their cells; a summary, a ruleset, a diff are escaped here
    if not verbatim and display.width:
        text = "\n".join(wrap(line, indent="  ") if len(line) > display.width else line for line in text.split("\n"))
    print(text, file=out)
    out.flush()


def say(text: str, *, err: bool = False, out: TextIO | None = None) -> None:
    """One line (or several) of aegir's own on stdout (stderr with `err`, or `out`), host text in it escaped:
    a plan shown before a question, a line saying what a run does, a followed log."""
    stream = out or (sys.stderr if err else sys.stdout)
    print(printable(text), file=stream, flush=True)


def ask(question: str) -> str:
    """The operator's answer to `question` (escaped: it names the hosts' projects), read from stdin.
    An end of input (Ctrl-D, stdin closed) is the empty answer: no."""
    try:
        return input(printable(question))
    except EOFError:
        sys.stdout.write("\n")
        return ""


class Escaping:
    """A text stream for a host's streamed output (``apps.logs``, ``apps.compose``): every chunk goes to
    `out` through `printable`, so a log line cannot move the cursor, retitle or clear the terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> int:
        self.out.write(printable(text))
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def warn(text: str, *, out: TextIO | None = None) -> None:
    """One warning of aegir's on stderr: host text escaped (`printable`), wrapped to `display.width`."""
    print(wrap(printable(text), indent="  "), file=out or sys.stderr, flush=True)


class Progress(Background):
    """``with Progress("disk.report", names) as p: ... p.done(name, "ok")``.

    On a terminal: after `delay` seconds, and then every `every` seconds while
    work remains, rewrites one line ``label: 2/3 done, waiting for hyp3`` on
    stderr. Elsewhere (a log, a pipe): once `delay` has passed, one line per
    finished host, ``label: hyp2 failed (2/3)``, the hosts finished before it
    included. Silent for work that finishes within `delay`.
    """

    def __init__(self, label: str, names: Sequence[str], *, delay: float = 1.0,
                 every: float = 1.0, stream: TextIO | None = None) -> None:
        self.label = printable(label)
        self.pending = [printable(n) for n in names]  # host and folder names: shown escaped
        self.total = len(names)
        self.delay = delay
        self.every = every
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._shown = False
        self._finished: list[tuple[str, str]] = []  # (name, how), not yet written (non-terminal)
        self._live = False  # non-terminal: past `delay`, write each host as it finishes
        super().__init__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        if self._shown and self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def add(self, names: Sequence[str]) -> None:
        """More work, learnt on the way (the projects of a host once it has answered)."""
        with self._lock:
            self.pending.extend(printable(n) for n in names)
            self.total += len(names)

    def done(self, name: str, how: str = "done") -> None:
        """`name` finished; `how` is a word for the non-terminal line (ok, failed, not attempted...)."""
        name, how = printable(name), printable(how)
        with self._lock:
            if name not in self.pending:
                return
            self.pending.remove(name)
            self._finished.append((name, how))
            if self._live:
                self._flush_finished()

    @property
    def _tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self) -> str:
        with self._lock:
            waiting = ", ".join(self.pending[:5]) + (" …" if len(self.pending) > 5 else "")
            done = self.total - len(self.pending)
        return f"{self.label}: {done}/{self.total} done" + (f", waiting for {waiting}" if waiting else "")

    def _flush_finished(self) -> None:  # with self._lock held
        done = self.total - len(self.pending) - len(self._finished)
        for name, how in self._finished:
            done += 1
            self.stream.write(f"{self.label}: {name} {how} ({done}/{self.total})\n")
        self._finished.clear()
        self.stream.flush()

    def _loop(self) -> None:
        if self._stop.wait(self.delay):
            return
        if not self._tty:
            with self._lock:
                self._live = True
                self._flush_finished()
            return
        start = time.monotonic()
        while True:
            line = self.line()
            if display.width and len(line) >= display.width:  # a line rewritten in place must not wrap
                line = line[:display.width - 2] + "…"
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
            self._shown = True
            if self._stop.wait(self.every):
                return
            if time.monotonic() - start > 86400:  # pragma: no cover - safety net
                return
