"""update.review's table leads with what needs a decision; `--all` lists every package."""

from __future__ import annotations

from aegir.action import HostRun
from aegir.fleet import Outcome
from aegir.inventory import Host
from aegir.update.classify import HostReview, PackageReview
from aegir.update.plan import ReviewPlan, record_of
from aegir.update.report import render_review


def pkg(name: str, *kinds: str, origin: str = "Debian:12.8/stable") -> PackageReview:
    return PackageReview(name, "1.0-1", "1.0-2", origin, kinds, (f"{name} is {kinds[0]}",))


REVIEW = HostReview(
    packages=(pkg("containerd", "docker"), pkg("linux-image-amd64", "reboot", "security"),
              pkg("openssl", "security", origin="Debian-Security:12/stable-security"), pkg("libfoo1", "other"),
              pkg("libbar1", "other")),
    held=("postgresql-15",), live_restore=False,
)


def rendered(every: bool) -> str:
    reviewed = ReviewPlan(REVIEW, record_of(REVIEW, now=0.0, by="op@here"))
    return render_review([Outcome(Host("hyp1"), HostRun(reviewed))], every=every)


def test_the_review_lists_the_risky_reboot_and_held_packages_then_a_count_per_class():
    text = rendered(every=False)
    listed = [line.split()[1] for line in text.split("\n\n")[0].splitlines()[2:]]
    assert listed == ["containerd", "linux-image-amd64", "postgresql-15"]
    assert "ORIGIN" not in text and "libfoo1" not in text
    assert ("hyp1: 5 upgrades: 1 docker, 1 reboot, 1 security, 2 other "
            "(3 not listed: update.review --all lists every package)") in text.splitlines()


def test_all_lists_every_package_with_its_origin():
    text = rendered(every=True)
    listed = [line.split()[1] for line in text.split("\n\n")[0].splitlines()[2:]]
    assert listed == ["containerd", "linux-image-amd64", "openssl", "libfoo1", "libbar1", "postgresql-15"]
    assert "Debian-Security:12/stable-security" in text
    assert "hyp1: 5 upgrades: 1 docker, 1 reboot, 1 security, 2 other" in text.splitlines()


def test_the_review_leads_with_the_processes_left_on_old_code_and_who_restarts_them():
    from dataclasses import replace

    from aegir.update.mapped import Mapped

    lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
    rows = (Mapped(202, "containerd", "containerd.service", lib, "libssl3"),
            Mapped(404, "cron", "cron.service", lib, "libssl3"))
    ssl = PackageReview("libssl3", "3.0.15-1", "3.0.16-1", "Debian:12.9/stable", ("docker",),
                        (f"libssl3: containerd.service maps {lib}",), stale=rows,
                        stale_risky=(f"libssl3: containerd.service maps {lib}",), stale_docker_only=True)
    review = replace(REVIEW, packages=(ssl, *REVIEW.packages), stale=rows,
                     outlook="needrestart absent: containerd.service, cron.service keep the old code until "
                             "restarted by hand")
    reviewed = ReviewPlan(review, record_of(review, now=0.0, by="op@here"))
    text = render_review([Outcome(Host("hyp1"), HostRun(reviewed))])
    lines = text.splitlines()
    assert lines[0] == "Left on the old code by the upgrade (until restarted):"
    assert lines[3].split() == ["hyp1", "libssl3", "containerd.service", "containerd", lib, "docker"]
    assert lines[4:6] == [
        "hyp1: needrestart absent: containerd.service, cron.service keep the old code until restarted by hand",
        "hyp1: 1 other process left on the old code (update.review --all lists them)"]
    assert review.headline().startswith(f"libssl3: containerd.service maps {lib}; would restart docker via containerd")
    every = render_review([Outcome(Host("hyp1"), HostRun(reviewed))], every=True).splitlines()
    assert every[4].split() == ["hyp1", "libssl3", "cron.service", "cron", lib, "-"]
