"""Every zone the unit tests' plans make loads where it will be served: BIND's and NSD's zone checkers
(``named-checkzone``, ``nsd-checkzone``) and a real knotd (bookworm has no ``kzonecheck``), no lab needed.
The plans: the unit tests' projects, the hostile ones (takeover, too long a name: rows, and zones that
still load), and seeded random fleets."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from aegir.dns import plan, zonefile
from tests.knot import Knot, zones_refused
from tests.unit import test_dns as unit
from tests.unit import test_dns_hostile as hostile


def write(p: plan.Plan, folder: Path) -> list[str]:
    (folder / "zones").mkdir(parents=True, exist_ok=True)
    for z in p.zones:
        (folder / "zones" / zonefile.file_name(z.origin)).write_text(zonefile.render(z))
    return [z.origin for z in p.zones]


PLANS = {
    "projects": lambda: unit.the_plan(unit.COMPOSE, unit.LABELLED),
    "takeover": lambda: hostile.build("hyp2", hostile.TAKEOVER),
    "too long": lambda: hostile.build("hyp1", f"x-aegir: {{dns: {{names: [ok, '{hostile.LONG}']}}}}\n"),
    "apex mx": lambda: plan.build(hostile.with_mx()[0].hosts, hostile.with_mx()[1], [], 1),
}


@pytest.mark.parametrize("name", PLANS)
def test_the_unit_plans_zones_load_in_bind_nsd_and_knot(name, tmp_path):
    p = PLANS[name]()
    origins = write(p, tmp_path)
    assert zones_refused(tmp_path / "zones", origins) == {}
    with Knot.serving(tmp_path, origins, {z.origin: z.serial for z in p.zones}):
        pass


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(unit.fleets())
def test_random_fleets_zones_load_in_bind_and_nsd(tmp_path, fleet):
    folder = tmp_path / str(abs(hash(str(fleet[2]))))
    p = unit.built(fleet)
    assert zones_refused(folder / "zones", write(p, folder)) == {}, p.problems
