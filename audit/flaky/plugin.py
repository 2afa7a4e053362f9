"""The pytest plugin ml-audit loads into a target's run (entry point ``ml_audit`` in pytest11).

Inert unless ``--audit-enable`` is given: a user's ordinary ``pytest`` run must not change.
(The settings it applies arrive with ``audit flaky``.)
"""


def pytest_addoption(parser):
    group = parser.getgroup("ml-audit")
    group.addoption("--audit-enable", action="store_true", default=False,
                    help="ml-audit: apply the --audit-* settings to this run (off by default)")
