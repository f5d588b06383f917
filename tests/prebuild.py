"""Build the upstream binaries a test session needs before its first test, in plain sight.

A cold build takes many minutes. Done lazily inside a fixture, it would run under the first
test's timeout with its progress captured (shown only in a failure report); done here, right
after collection, its progress lines reach the terminal as they come.
"""

from __future__ import annotations

import contextlib
import sys

import pytest

from inferops.devcluster import binaries

# What each fixture builds on first use (the cluster's set depends on --cluster).
FIXTURE_BINARIES: dict[str, tuple[str, ...]] = {
    "s3_server": ("versitygw",),
    "helm": ("helm",),
    "operator": ("helm",),  # renders the chart's RBAC
    "real_cluster": binaries.CONTROL_PLANE_BINARIES + binaries.NODE_BINARIES,
}
IMAGES_FIXTURE = "built_images"  # the local images (tests/node)


def binaries_needed(items: list[pytest.Item], cluster_mode: str) -> tuple[str, ...]:
    needed: list[str] = []
    for item in items:
        names = list(getattr(item, "fixturenames", ()))
        for fixture in names:
            if fixture == "cluster":
                needed += binaries.CONTROL_PLANE_BINARIES if cluster_mode == "local" else ("kubectl",)
            needed += FIXTURE_BINARIES.get(fixture, ())
    return tuple(dict.fromkeys(needed))


def images_needed(items: list[pytest.Item]) -> bool:
    return any(IMAGES_FIXTURE in getattr(item, "fixturenames", ()) for item in items)


def build_before_tests(session: pytest.Session) -> None:
    names = binaries_needed(session.items, session.config.getoption("--cluster"))
    images = images_needed(session.items)
    if not names and not images:
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        try:
            binaries.ensure_binaries(names)
            if images:
                from inferops.devcluster import local_images

                local_images.build_images(local_images.NODE_TEST_IMAGES)
        except Exception as exc:  # noqa: BLE001 - the fixtures that need them fail with the same error
            print(f"[inferops build] could not build what the tests need: {exc}", file=sys.stderr, flush=True)
