"""The boot steps, one `aegir.action.Action` each, in one table (`STEP_TABLE`) that every boot task walks.

A step plans from facts only (`plan`: what the row says when nothing is to be
done, or the work and the exact commands), acts on the hosts that have work
(`act`: the change, then a fresh read of the facts that must hold after it).
``boot.mount`` walks one step, ``boot.all`` the runbook's order (`ORDER`):
`walk` runs each step on the hosts still standing, so a step behaves the same
alone or in the sequence; under ``--dry`` a host stops at its first step with
work, the later ones said "after the steps above".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aegir import action
from aegir.boot import DOCKER_TIMEOUT, MIN_FREE_PERCENT
from aegir.boot.facts import (
    EXIT_WRONG_PASSPHRASE,
    DataRoot,
    daemon_json_fact,
    file_fact,
    fstab_fact,
    is_luks_fact,
    listing_fact,
    losetup_fact,
    luks_open_cmd,
    luks_test_cmd,
    mapping_fact,
    mounted_fact,
    parse_daemon_json,
    parse_docker_info,
    parse_losetup,
)
from aegir.boot.plan import (
    DONE,
    FAILED,
    OK,
    SKIPPED,
    WOULD,
    HostBoot,
    Planned,
    SrvFacts,
    StepPlan,
    StepResult,
    blocking,
    check_items,
    check_started,
    guard_dropin,
    guard_paths,
    guard_problems,
    plan_docker,
    plan_guard,
    plan_mount,
    plan_unlock,
    verify_cmd,
    verify_problems,
)
from aegir.boot.secrets import Prompter, retry
from aegir.compose.plan import HostPlan, planned_rows
from aegir.compose.status import HostStatus, gather_status
from aegir.compose.steps import act_host, plan_host
from aegir.docker import DockerUnavailable, dockerd_fact, running_info
from aegir.errors import AegirError, CommandError
from aegir.facts import Fact
from aegir.fw import nft
from aegir.fw import steps as fwsteps
from aegir.inventory import Host, for_context
from aegir.poll import until
from aegir.sh import Cmd, mask, write_file_cmd

if TYPE_CHECKING:  # pragma: no cover
    from invoke import Context

    from aegir.host import HostContext

#: The runbook's order after a reboot (``boot.all``); ``--start`` adds `START` before the status.
ORDER = ("unlock", "mount", "check", "docker", "status")
START = "start"


@dataclass(frozen=True)
class Options:
    """The flags the boot tasks share (each step reads the ones it needs)."""

    min_free: float = MIN_FREE_PERCENT
    timeout: float = DOCKER_TIMEOUT
    unknown_data_root: bool = False
    test: bool = False  # unlock: only check the passphrase
    root: str = "/"  # guard: install under this root (an image, a chroot)
    prompter: Prompter = field(default_factory=Prompter)


def docker_info(hc: HostContext, running: bool | None = None) -> Mapping[str, Any] | None:
    """``docker info`` through the SDK, or None when the daemon does not answer.

    None without connecting when no dockerd process runs (`running_info`;
    `running`: the answer of `dockerd_cmd`, when already asked): a read-only
    probe must never be what starts Docker on an unmounted /srv.
    """
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    try:
        return running_info(hc, running)
    except (DockerUnavailable, DockerException, RequestException, OSError, EOFError):  # EOFError: SSH closed
        return None


def read_srv(hc: HostContext, *, docker: bool = True) -> SrvFacts:
    """The /srv facts: mounted and fstab entries, `ls /srv`, loop backing files, mapping, data-root.

    One round trip asks them all (and whether dockerd runs, and daemon.json);
    then Docker itself is asked its data-root if it runs. The boot facts are
    never cached: each read sees the host as it is now.
    """
    host = hc.host
    losetup = losetup_fact()
    facts: list[Fact[Any]] = [mounted_fact(host.srv), fstab_fact(host.srv), listing_fact(host.srv), losetup]
    if host.luks_device:
        facts.append(mapping_fact(host.luks_name))
    if docker:
        facts += [dockerd_fact(), daemon_json_fact()]
    mounted, fstab, listing, loop_list, *rest = hc.facts(*facts)
    mapping = rest.pop(0) if host.luks_device else None
    loops: dict[str, str] = {}
    if mounted is not None and mounted.source.startswith("/dev/loop"):
        if loop_list.exited != 0:
            raise CommandError(hc.name, losetup.cmd.line, loop_list.exited, loop_list.stderr)
        loops = parse_losetup(loop_list.stdout)
    data_root = DataRoot(None, "unknown")
    if docker:
        running, daemon_json = rest
        info = docker_info(hc, running=running)
        data_root = parse_docker_info(info) if info is not None else parse_daemon_json(daemon_json)
    return SrvFacts(mounted, fstab, listing, data_root, loops, mapping)


def read_files(hc: HostContext, paths: Sequence[str]) -> dict[str, str | None]:
    """path -> its text (None: absent), all read in one round trip."""
    return dict(zip(paths, hc.facts(*(file_fact(p) for p in paths))))


class Step(action.Action[Planned, StepResult]):
    """A boot step: `name` in the tables, `what` under ``--dry`` when an earlier step must act first."""

    name = ""
    what = ""

    def __init__(self, c: Context, opts: Options) -> None:
        self.c = c
        self.opts = opts
        self.label = f"boot.{self.name}"

    def todo(self, plan: Planned) -> bool:
        return plan.todo

    def render(self, ran: action.Ran[Planned, StepResult]) -> action.Report:
        from aegir.boot.report import step_report

        return step_report(ran, self.name)

    def from_plan(self, plan: StepPlan, *, done: str = OK) -> Planned:
        """A `StepPlan` as this step's `Planned`: nothing to do (`done`), or the command to run."""
        if plan.command is None:
            return Planned(StepResult(self.name, done, plan.detail, warnings=plan.warnings))
        return Planned(StepResult(self.name, WOULD, plan.detail, (plan.command.line,), plan.warnings), True, plan)


class Unlock(Step):
    """isLuks and the mapping's state; then up to three tries of the passphrase typed at the terminal."""

    name, what = "unlock", "open the LUKS volume"
    serial = True  # the passphrase prompt owns the terminal: one host after another

    def plan(self, hc: HostContext) -> Planned:
        host, device = hc.host, hc.host.luks_device
        is_luks = mapping = None
        if device:
            if self.opts.test:
                is_luks = hc.fact(is_luks_fact(device))
            else:
                is_luks, mapping = hc.facts(is_luks_fact(device), mapping_fact(host.luks_name))
        plan = plan_unlock(host, is_luks, mapping, test=self.opts.test)
        if plan.action == "skip":
            return Planned(StepResult(self.name, SKIPPED, plan.detail))
        if plan.command is None:
            return Planned(StepResult(self.name, OK, plan.detail, warnings=plan.warnings))
        return Planned(StepResult(self.name, WOULD, f"{plan.detail}; the passphrase is typed at the terminal "
                                  "and sent on stdin", (plan.command.line,)), True, plan)

    def act(self, hc: HostContext, plan: Planned) -> StepResult:
        host, device, test = hc.host, hc.host.luks_device, self.opts.test
        assert device is not None

        def attempt(passphrase: str) -> bool:
            cmd = luks_test_cmd(device, passphrase) if test else luks_open_cmd(device, host.luks_name, passphrase)
            r = hc.run(cmd, check=False)
            if r.exited == EXIT_WRONG_PASSPHRASE:
                return False
            if r.exited != 0:
                raise CommandError(host.name, cmd.line, r.exited, mask(r.stderr, [passphrase]))
            return True

        tries = retry(self.opts.prompter, host.name, device, attempt)
        if test:
            return StepResult(self.name, OK, f"the passphrase opens {device} (try {tries} of "
                              f"{self.opts.prompter.tries}); nothing activated", plan.row.commands)
        if not hc.fact(mapping_fact(host.luks_name)).active:
            raise AegirError(f"cryptsetup accepted the passphrase but {host.luks_name} is not active", host=host.name)
        return StepResult(self.name, DONE, f"opened {device} as /dev/mapper/{host.luks_name}", plan.row.commands)


class Mount(Step):
    """Mount /srv (fstab, or the opened mapping) unless it already is; read the mount table again after."""

    name, what = "mount", "mount /srv"

    def plan(self, hc: HostContext) -> Planned:
        return self.from_plan(plan_mount(hc.host, read_srv(hc, docker=False)))

    def act(self, hc: HostContext, plan: Planned) -> StepResult:
        host, work = hc.host, plan.work
        hc.run(work.command)
        after = read_srv(hc, docker=False).mounted
        if after is None:
            raise AegirError(f"`{work.command.line}` succeeded but {host.srv} is still not a mount point",
                             host=host.name)
        return StepResult(self.name, DONE, f"mounted {host.srv} ({after.source}, {after.fstype})",
                          plan.row.commands, plan.row.warnings)


class Check(Step):
    """The check table of /srv (read-only): a failed row when something blocks Docker's start."""

    name, what = "check", "check /srv"

    def plan(self, hc: HostContext) -> Planned:
        items = check_items(hc.host, read_srv(hc), self.opts.min_free)
        stop = blocking(items)
        warnings = tuple(f"{i.name}: {i.detail}" for i in items if i.status == "warning")
        if stop:
            row = StepResult(self.name, FAILED, "; ".join(f"{i.name}: {i.detail}" for i in stop), warnings=warnings)
        else:
            row = StepResult(self.name, OK, "mount point, folders, data-root and free space are fine",
                             warnings=warnings)
        return Planned(row, work=items)


class Docker(Step):
    """Start Docker only on a mounted and checked /srv; wait until it answers; check its data-root.

    A host whose firewall aegir manages first gets aegir's ruleset with no
    container published (`aegir.fw.steps.before_docker`), checked and verified
    like fw.apply: nothing is exposed until fw.watch or fw.apply publishes.
    """

    name, what = "docker", "start Docker if the check passes"

    def plan(self, hc: HostContext) -> Planned:
        host, opts = hc.host, self.opts
        facts = read_srv(hc)
        plan = plan_docker(host, check_items(host, facts, opts.min_free), facts.data_root,
                           timeout=opts.timeout, unknown_data_root=opts.unknown_data_root)
        if plan.command is None:
            return Planned(StepResult(self.name, OK, plan.detail))
        fw = fwsteps.before_docker(hc, for_context(self.c))
        firewall = (Cmd.of("nft", "-f", f"{fw.settings.state_dir}/{nft.CANDIDATE}").line,) if fw and fw.changed else ()
        note = "; first aegir's firewall with no container published" if firewall else ""
        return Planned(StepResult(self.name, WOULD, plan.detail + note, (*firewall, plan.command.line)), True,
                       (plan, fw if firewall else None))

    def act(self, hc: HostContext, plan: Planned) -> StepResult:
        work, fw = plan.work
        if fw is not None:
            fwsteps.apply(hc, fw, fwsteps.fresh_login(self.c, hc))
        hc.run(work.command)
        root, took = wait_for_docker(hc, self.opts.timeout)
        check_started(hc.host, root)
        shut = "; firewall loaded with no container published" if fw is not None else ""
        return StepResult(self.name, DONE, f"started Docker (answered after {took:.1f}s, data-root {root.path}){shut}",
                          plan.row.commands)


def wait_for_docker(hc: HostContext, timeout: float) -> tuple[DataRoot, float]:
    """Poll the daemon until it answers (`docker info`); its data-root and the seconds it took."""
    def answers() -> tuple[bool, Mapping[str, Any] | None]:
        info = docker_info(hc)
        return info is not None, info

    done, info, took = until(answers, timeout=timeout, interval=0.5)
    if not done or info is None:
        raise AegirError(f"Docker was started but did not answer within {timeout:g}s", host=hc.name)
    return parse_docker_info(info), took


def status_of(hc: HostContext) -> HostStatus:
    """The Compose status (`gather_status`: Docker is asked only once a dockerd process runs); when Docker
    cannot answer, what to run next."""
    try:
        return gather_status(hc)
    except DockerUnavailable as exc:
        raise DockerUnavailable(f"{exc.message}: run boot.docker", host=hc.name) from None


class Start(Step):
    """Start what is not up, core first (``front`` first), then apps and users; say what did not come up."""

    name, what = START, "start core, then apps"

    def plan(self, hc: HostContext) -> Planned:
        st = status_of(hc)
        todo = [p.path for p in st.projects if not p.ok]
        if not todo:
            return Planned(StepResult(self.name, OK, f"all {len(st.projects)} projects already up" if st.projects
                                      else "no Compose projects found"))
        steps: HostPlan = plan_host(hc, todo, "up")
        return Planned(StepResult(self.name, WOULD, f"start {len(steps.steps)} projects, core first",
                                  tuple(r.command for r in planned_rows(hc.host, steps.steps))), True, steps)

    def act(self, hc: HostContext, plan: Planned) -> StepResult:
        rows = act_host(hc, plan.work.steps)
        bad = [r for r in rows if not r.ok]
        commands = tuple(r.command for r in rows)
        if bad:
            return StepResult(self.name, FAILED, f"{len(bad)} of {len(rows)} projects did not come up: "
                              + "; ".join(f"{r.project} {r.result}: {r.detail}" for r in bad), commands)
        return StepResult(self.name, DONE, f"started {len(rows)} projects, core first", commands)

    def failed(self, result: StepResult) -> str | None:
        return None if result.ok else result.detail


class Status(Step):
    """Every Compose project's state, core first (read-only): failed when one is not up."""

    name, what = "status", "show the Compose projects"

    def plan(self, hc: HostContext) -> Planned:
        st = status_of(hc)
        down = [p for p in st.projects if not p.ok]
        if down:
            names = ", ".join(f"{p.path} ({p.state} {p.services})" for p in down)
            row = StepResult(self.name, FAILED, f"{len(down)} of {len(st.projects)} projects not up: {names}")
        else:
            row = StepResult(self.name, OK, f"{len(st.projects)} projects up" if st.projects
                             else "no Compose projects found")
        return Planned(row, work=st)


class Guard(Step):
    """Install the drop-ins unless identical; reload systemd when at /; verify what is on disk."""

    name, what = "guard", "install the systemd guard"

    def plan(self, hc: HostContext) -> Planned:
        root, wanted = self.opts.root, guard_dropin(hc.host.srv)
        paths = guard_paths(root)
        files = plan_guard(paths, read_files(hc, [p for _, p in paths]), wanted)
        todo = tuple(f for f in files if f.action != "already")
        shown = "; ".join(f"{f.action} {f.path}" for f in files)
        if not todo:
            how = verify_guard(hc, [p for _, p in paths], wanted)
            return Planned(StepResult(self.name, OK, f"already installed; {how}"), work=(todo, wanted))
        reload = ("systemctl daemon-reload",) if root == "/" else ()
        return Planned(StepResult(self.name, WOULD, shown, (*(f"write {f.path} (mode 0644)" for f in todo), *reload)),
                       True, (todo, wanted))

    def act(self, hc: HostContext, plan: Planned) -> StepResult:
        todo, wanted = plan.work
        warnings: list[str] = []
        for f in todo:
            hc.run(write_file_cmd(f.path, wanted))
        if self.opts.root == "/":
            r = hc.run(Cmd(("systemctl", "daemon-reload")), check=False)
            if r.exited != 0:
                warnings.append("systemctl daemon-reload failed (the drop-in applies from the next reload or boot): "
                                + (r.stderr.strip().splitlines() or ["?"])[-1])
        how = verify_guard(hc, [p for _, p in guard_paths(self.opts.root)], wanted)
        return StepResult(self.name, DONE, "installed " + ", ".join(f.path for f in todo) + f"; {how}",
                          tuple(f"install {f.path}" for f in todo), tuple(warnings))


def verify_guard(hc: HostContext, paths: Sequence[str], wanted: str) -> str:
    """Read the drop-ins back, parse them, and run ``systemd-analyze verify`` when the host has it (reads only)."""
    srv = hc.host.srv
    for path, text in read_files(hc, paths).items():
        if text != wanted:
            raise AegirError(f"{path} does not hold the guard after installing it", host=hc.name)
        problems = guard_problems(text, srv)
        if problems:
            raise AegirError(f"{path}: {'; '.join(problems)}", host=hc.name)
    cmd = verify_cmd(*paths)
    r = hc.fact(Fact("boot.guard.verify", cmd, lambda reply: reply, answers=None, cache=False))
    if r.exited == 127:
        return "parsed (systemd-analyze is not installed)"
    problems = verify_problems(r.stderr)
    if problems:
        raise AegirError("systemd-analyze verify: " + "; ".join(problems), host=hc.name)
    if r.exited != 0:
        raise CommandError(hc.name, cmd.line, r.exited, r.stderr)
    return "verified by systemd-analyze"


#: Every boot step by name: the boot tasks walk it.
STEP_TABLE: dict[str, type[Step]] = {s.name: s for s in (Unlock, Mount, Check, Docker, Start, Status, Guard)}


def walk(c: Context, hosts: Sequence[Host], names: Sequence[str], opts: Options, *, dry: bool,
         fmt: str = "table") -> list[HostBoot]:
    """Each step of `names`, in order, on the hosts still standing (a host stops at its first failure).

    Under `dry` a host stops planning at its first step with work: the later
    steps cannot be planned before it acts, and say "after the steps above".
    A step alone (``boot.mount``, ``boot.docker``) shows its plan before acting.
    """
    rows: dict[str, list[StepResult]] = {h.name: [] for h in hosts}
    works: dict[str, list[Any]] = {h.name: [] for h in hosts}
    raised: dict[str, tuple[str, str, str]] = {}  # host -> (step, message, kind)
    for name in names:
        step = STEP_TABLE[name](c, opts)
        alive = [h for h in hosts if h.name not in raised and all(r.ok for r in rows[h.name])]
        ready = [h for h in alive if not any(r.state == WOULD for r in rows[h.name])]
        for h in alive:
            if h not in ready:
                rows[h.name].append(StepResult(name, WOULD, f"{step.what}, after the steps above"))
        if not ready:
            continue
        ran = action.run(c, step, ready, dry=dry, fmt=fmt, preview=len(names) == 1 and name in ("mount", "docker"))
        for o in ran.outcomes:
            if o.value is None or (o.value.result is None and not o.ok):
                raised[o.host.name] = (name, o.error or o.kind, o.kind)
                continue
            works[o.host.name].append(o.value.plan.work)
            rows[o.host.name].append(o.value.result if o.value.result is not None else o.value.plan.row)
    return [HostBoot(h, tuple(rows[h.name]), raised[h.name][:2] if h.name in raised else None,
                     raised[h.name][2] if h.name in raised else "failed", tuple(works[h.name])) for h in hosts]
