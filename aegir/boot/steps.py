"""Each boot step run against a host: read the facts, plan, act (unless dry), verify.

The single tasks (``boot.mount``...) and ``boot.all`` go through the same
`run_step`, so a step behaves the same alone or in the sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aegir import fleet
from aegir.boot import DOCKER_TIMEOUT
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
    luks_status_cmd,
    luks_test_cmd,
    mapping_fact,
    mounted_fact,
    parse_daemon_json,
    parse_docker_info,
    parse_losetup,
    parse_luks_status,
)
from aegir.boot.plan import (
    DONE,
    FAILED,
    MIN_FREE_PERCENT,
    OK,
    SKIPPED,
    STEPS,
    WOULD,
    CheckItem,
    SrvFacts,
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
    verdict,
    verify_cmd,
    verify_problems,
)
from aegir.boot.secrets import Prompter, retry
from aegir.compose.lifecycle import act_host, plan_host, planned
from aegir.compose.status import HostStatus, gather_status
from aegir.docker import DockerUnavailable, dockerd_fact, running_info
from aegir.errors import AegirError, CommandError
from aegir.facts import Fact
from aegir.fw import host as fwhost
from aegir.fw import nft
from aegir.host import HostContext
from aegir.inventory import for_context
from aegir.poll import until
from aegir.sh import Cmd, mask, write_file_cmd


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
    then Docker itself is asked its data-root if it runs.
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


# --------------------------------------------------------------------------- steps (one host)


def unlock_step(hc: HostContext, *, test: bool, prompter: Prompter | None) -> StepResult:
    """isLuks, mapping state, then (with a `prompter`) up to three tries of the passphrase."""
    host = hc.host
    device = host.luks_device
    is_luks = mapping = None
    if device:
        if test:
            is_luks = hc.fact(is_luks_fact(device))
        else:
            is_luks, mapping = hc.facts(is_luks_fact(device), mapping_fact(host.luks_name))
    plan = plan_unlock(host, is_luks, mapping, test=test)
    if plan.action == "skip":
        return StepResult("unlock", SKIPPED, plan.detail)
    if plan.action == "already":
        return StepResult("unlock", OK, plan.detail, warnings=plan.warnings)
    assert device is not None and plan.command is not None
    shown = (plan.command.line,)
    if prompter is None:
        return StepResult("unlock", WOULD, f"{plan.detail}; the passphrase is typed at the terminal "
                          "and sent on stdin", shown)

    def attempt(passphrase: str) -> bool:
        cmd = luks_test_cmd(device, passphrase) if test else luks_open_cmd(device, host.luks_name, passphrase)
        r = hc.run(cmd, check=False)
        if r.exited == EXIT_WRONG_PASSPHRASE:
            return False
        if r.exited != 0:
            raise CommandError(host.name, cmd.line, r.exited, mask(r.stderr, [passphrase]))
        return True

    tries = retry(prompter, host.name, device, attempt)
    if test:
        return StepResult("unlock", OK, f"the passphrase opens {device} (try {tries} of {prompter.tries}); "
                          "nothing activated", shown)
    status = hc.run(luks_status_cmd(host.luks_name), check=False)
    if not parse_luks_status(host.luks_name, status.stdout, status.stderr, status.exited).active:
        raise AegirError(f"cryptsetup accepted the passphrase but {host.luks_name} is not active", host=host.name)
    return StepResult("unlock", DONE, f"opened {device} as /dev/mapper/{host.luks_name}", shown)


def mount_step(hc: HostContext, *, act: bool) -> StepResult:
    """Mount /srv (fstab, or the opened mapping) unless it already is; check again after."""
    host = hc.host
    plan = plan_mount(host, read_srv(hc, docker=False))
    if plan.action == "already":
        return StepResult("mount", OK, plan.detail)
    assert plan.command is not None
    if not act:
        return StepResult("mount", WOULD, plan.detail, (plan.command.line,), plan.warnings)
    hc.run(plan.command)
    after = read_srv(hc, docker=False).mounted
    if after is None:
        raise AegirError(f"`{plan.command.line}` succeeded but {host.srv} is still not a mount point", host=host.name)
    return StepResult("mount", DONE, f"mounted {host.srv} ({after.source}, {after.fstype})",
                      (plan.command.line,), plan.warnings)


def check_step(hc: HostContext, *, min_free: float) -> tuple[CheckItem, ...]:
    """The check table of one host (read-only)."""
    return check_items(hc.host, read_srv(hc), min_free)


def check_result(items: Sequence[CheckItem]) -> StepResult:
    """The check table as one step: ok, or failed with what is wrong."""
    stop = blocking(items)
    warnings = tuple(f"{i.name}: {i.detail}" for i in items if i.status == "warning")
    if stop:
        return StepResult("check", FAILED, "; ".join(f"{i.name}: {i.detail}" for i in stop), warnings=warnings)
    return StepResult("check", OK, "mount point, folders, data-root and free space are fine", warnings=warnings)


def wait_for_docker(hc: HostContext, timeout: float) -> tuple[DataRoot, float]:
    """Poll the daemon until it answers (`docker info`); its data-root and the seconds it took."""
    def answers() -> tuple[bool, Mapping[str, Any] | None]:
        info = docker_info(hc)
        return info is not None, info

    done, info, took = until(answers, timeout=timeout, interval=0.5)
    if not done or info is None:
        raise AegirError(f"Docker was started but did not answer within {timeout:g}s", host=hc.name)
    return parse_docker_info(info), took


def docker_step(c: Any, hc: HostContext, *, act: bool, min_free: float, timeout: float,
                unknown_data_root: bool = False) -> StepResult:
    """Start Docker only on a mounted and checked /srv; wait until it answers; check its data-root.

    A host whose firewall aegir manages first gets aegir's ruleset with no
    container published (`aegir.fw.host.before_docker`), checked and verified
    like fw.apply: nothing is exposed until fw.watch or fw.apply publishes.
    """
    host = hc.host
    facts = read_srv(hc)
    plan = plan_docker(host, check_items(host, facts, min_free), facts.data_root, unknown_data_root=unknown_data_root)
    if plan.action == "already":
        return StepResult("docker", OK, plan.detail)
    assert plan.command is not None
    fw = fwhost.before_docker(hc, for_context(c))
    firewall = (Cmd.of("nft", "-f", f"{fw.settings.state_dir}/{nft.CANDIDATE}").line,) if fw and fw.changed else ()
    commands = (*firewall, plan.command.line)
    if not act:
        note = "; first aegir's firewall with no container published" if firewall else ""
        return StepResult("docker", WOULD, plan.detail + note, commands)
    if fw is not None and firewall:
        fwhost.apply(hc, fw, fwhost.fresh_login(c, hc))
    hc.run(plan.command)
    root, took = wait_for_docker(hc, timeout)
    check_started(host, root)
    shut = "; firewall loaded with no container published" if firewall else ""
    return StepResult("docker", DONE, f"started Docker (answered after {took:.1f}s, data-root {root.path}){shut}",
                      commands)


def status_of(hc: HostContext) -> HostStatus:
    """The Compose status (`gather_status`: Docker is asked only once a dockerd process runs); when Docker
    cannot answer, what to run next."""
    try:
        return gather_status(hc)
    except DockerUnavailable as exc:
        raise DockerUnavailable(f"{exc.message}: run boot.docker", host=hc.name) from None


def start_step(hc: HostContext, *, act: bool) -> StepResult:
    """Start what is not up, core first (``front`` first), then apps and users; say what did not come up."""
    st = status_of(hc)
    todo = [p.path for p in st.projects if not p.ok]
    if not todo:
        return StepResult("start", OK, f"all {len(st.projects)} projects already up" if st.projects
                          else "no Compose projects found")
    steps = plan_host(hc, todo, "up").steps
    if not act:
        return StepResult("start", WOULD, f"start {len(steps)} projects, core first",
                          tuple(r.command for r in planned(hc, steps)))
    rows = act_host(hc, steps)
    bad = [r for r in rows if not r.ok]
    commands = tuple(r.command for r in rows)
    if bad:
        return StepResult("start", FAILED, f"{len(bad)} of {len(rows)} projects did not come up: "
                          + "; ".join(f"{r.project} {r.result}: {r.detail}" for r in bad), commands)
    return StepResult("start", DONE, f"started {len(rows)} projects, core first", commands)


def status_result(st: HostStatus) -> StepResult:
    """A host's Compose status (`aegir.compose.status.HostStatus`) as a step: ok when every project is up."""
    down = [p for p in st.projects if not p.ok]
    if down:
        names = ", ".join(f"{p.path} ({p.state} {p.services})" for p in down)
        return StepResult("status", FAILED, f"{len(down)} of {len(st.projects)} projects not up: {names}")
    return StepResult("status", OK, f"{len(st.projects)} projects up" if st.projects else "no Compose projects found")


def guard_step(hc: HostContext, *, root: str, act: bool) -> StepResult:
    """Install the drop-ins unless identical; reload systemd when at /; verify what is on disk."""
    host = hc.host
    wanted = guard_dropin(host.srv)
    paths = guard_paths(root)
    plan = plan_guard(paths, read_files(hc, [p for _, p in paths]), wanted)
    todo = [f for f in plan if f.action != "already"]
    shown = tuple(f"{f.action} {f.path}" for f in plan)
    if todo and not act:
        reload = ("systemctl daemon-reload",) if root == "/" else ()
        return StepResult("guard", WOULD, "; ".join(shown), (*(f"write {f.path} (mode 0644)" for f in todo), *reload))
    warnings: list[str] = []
    for f in todo:
        hc.run(write_file_cmd(f.path, wanted))
    if todo and root == "/":
        r = hc.run(Cmd(("systemctl", "daemon-reload")), check=False)
        if r.exited != 0:
            warnings.append("systemctl daemon-reload failed (the drop-in applies from the next reload or boot): "
                            + (r.stderr.strip().splitlines() or ["?"])[-1])
    how = verify_guard(hc, [p for _, p in paths], wanted)
    state = DONE if todo else OK
    detail = ("installed " + ", ".join(f.path for f in todo) if todo else "already installed") + f"; {how}"
    return StepResult("guard", state, detail, tuple(f"install {f.path}" for f in todo), tuple(warnings))


def read_files(hc: HostContext, paths: Sequence[str]) -> dict[str, str | None]:
    """path -> its text (None: absent), all read in one round trip."""
    return dict(zip(paths, hc.facts(*(file_fact(p) for p in paths))))


def verify_guard(hc: HostContext, paths: Sequence[str], wanted: str) -> str:
    """Read the drop-ins back, parse them, and run ``systemd-analyze verify`` when the host has it."""
    srv = hc.host.srv
    for path, text in read_files(hc, paths).items():
        if text != wanted:
            raise AegirError(f"{path} does not hold the guard after installing it", host=hc.name)
        problems = guard_problems(text, srv)
        if problems:
            raise AegirError(f"{path}: {'; '.join(problems)}", host=hc.name)
    cmd = verify_cmd(*paths)
    r = hc.run(cmd, check=False)
    if r.exited == 127:
        return "parsed (systemd-analyze is not installed)"
    problems = verify_problems(r.stderr)
    if problems:
        raise AegirError("systemd-analyze verify: " + "; ".join(problems), host=hc.name)
    if r.exited != 0:
        raise CommandError(hc.name, cmd.line, r.exited, r.stderr)
    return "verified by systemd-analyze"


Outcomes = list[fleet.Outcome[StepResult]]


def run_unlock(c: Any, hosts: Sequence[Any], *, dry: bool, test: bool, prompter: Prompter) -> Outcomes:
    """Plan on every host in parallel, then ask and unlock one host after another."""
    first = fleet.each(c, hosts, lambda hc: unlock_step(hc, test=test, prompter=None), label="boot.unlock")
    need = [o.host for o in first if o.ok and o.value is not None and o.value.state == WOULD]
    if dry or not need:
        return first
    second = fleet.each(c, need, lambda hc: unlock_step(hc, test=test, prompter=prompter),
                        label="boot.unlock", serial=True)
    done = {o.host.name: o for o in second}
    return [done.get(o.host.name, o) for o in first]


#: What a step would do, for the steps a --dry run cannot plan yet (they follow a "would").
STEP_LABELS = {"unlock": "open the LUKS volume", "mount": "mount /srv", "check": "check /srv",
               "docker": "start Docker if the check passes", "start": "start core, then apps",
               "status": "show the Compose projects"}


def run_step(c: Any, step: str, hosts: Sequence[Any], *, act: bool, prompter: Prompter | None = None,
             min_free: float = MIN_FREE_PERCENT, timeout: float = DOCKER_TIMEOUT, test: bool = False,
             label: str | None = None, unknown_data_root: bool = False) -> tuple[Outcomes, list[Any]]:
    """One step of `STEPS` on `hosts`, as ``boot.<step>`` and ``boot.all`` both run it.

    For `status`, also the per-host `HostStatus` outcomes (for their table).
    """
    label = label or f"boot.{step}"
    prompter = prompter or Prompter()
    if step == "unlock":
        return run_unlock(c, hosts, dry=not act, test=test, prompter=prompter), []
    if step == "mount":
        return fleet.each(c, hosts, lambda hc: mount_step(hc, act=act), label=label), []
    if step == "check":
        return fleet.each(c, hosts, lambda hc: check_result(check_step(hc, min_free=min_free)), label=label), []
    if step == "docker":
        return fleet.each(c, hosts, lambda hc: docker_step(c, hc, act=act, min_free=min_free, timeout=timeout,
                                                           unknown_data_root=unknown_data_root), label=label), []
    if step == "start":
        return fleet.each(c, hosts, lambda hc: start_step(hc, act=act), label=label), []
    full = fleet.each(c, hosts, status_of, label=label)
    return [fleet.Outcome(o.host, status_result(o.value) if o.value else None, o.error, o.kind, o.seconds)
            for o in full], full


def run_planned(c: Any, step: str, hosts: Sequence[Any], *, show: Callable[[Outcomes], None],
                **kw: Any) -> Outcomes:
    """`step` planned on every host first (read only) and its plan passed to `show` before anything is done;
    then acted on the hosts with something to do. Nothing to do anywhere: the plan is the result, unshown.

    The act re-reads the facts, so a host that changed in between is acted on as it is now.
    """
    planned, _ = run_step(c, step, hosts, act=False, **kw)
    todo = [o.host for o in planned if o.value is not None and o.value.state == WOULD]
    if not todo:
        return planned
    show(planned)
    acted = {o.host.name: o for o in run_step(c, step, todo, act=True, **kw)[0]}
    return [acted.get(o.host.name, o) for o in planned]


@dataclass(frozen=True)
class HostBoot:
    """What `boot.all` did on one host: its steps, and the step that raised, if one did."""

    host: str
    steps: tuple[StepResult, ...]
    error: tuple[str, str] | None = None  # (step, message)

    @property
    def up(self) -> bool:
        return self.error is None and all(r.ok for r in self.steps)

    @property
    def verdict(self) -> str:
        return verdict(self.host, self.steps, self.error)


def run_all(c: Any, hosts: Sequence[Any], *, act: bool, prompter: Prompter, min_free: float,
            timeout: float, unknown_data_root: bool = False,
            start: bool = False) -> tuple[list[HostBoot], list[fleet.Outcome[HostStatus]]]:
    """Every step in order on the hosts still standing; and the status outcomes, if any host got there.

    `start` adds the ``start`` step (core, then apps) before the closing ``status``.
    """
    results: dict[str, list[StepResult]] = {h.name: [] for h in hosts}
    errors: dict[str, tuple[str, str]] = {}
    full: list[fleet.Outcome[HostStatus]] = []
    for step in (*STEPS[:-1], "start", STEPS[-1]) if start else STEPS:
        alive = [h for h in hosts if h.name not in errors and all(r.ok for r in results[h.name])]
        ready = [h for h in alive if not any(r.state == WOULD for r in results[h.name])]
        for h in alive:
            if h not in ready:  # --dry: an earlier step would act first, this one cannot be planned yet
                results[h.name].append(StepResult(step, WOULD, f"{STEP_LABELS[step]}, after the steps above"))
        if not ready:
            continue
        outcomes, status = run_step(c, step, ready, act=act, prompter=prompter, min_free=min_free, timeout=timeout,
                                    label=f"boot.all: {step}", unknown_data_root=unknown_data_root)
        full = status or full
        for o in outcomes:
            if o.value is None:
                errors[o.host.name] = (step, o.error or o.kind)
            else:
                results[o.host.name].append(o.value)
    return [HostBoot(h.name, tuple(results[h.name]), errors.get(h.name)) for h in hosts], full
