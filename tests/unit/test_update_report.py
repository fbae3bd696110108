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
