"""What the experiments found so far for one flaky test, and when a source counts as decided."""

from __future__ import annotations

from dataclasses import dataclass, field

from audit.stats import fisher_exact

SIGNIFICANT = 1e-3          # p below this: the source clearly changes the outcome
NOT_WORTH = 0.03            # 0 failures and a 95% bound below this: stop releasing the source


@dataclass
class Case:
    """One flaky test's counts: pinned, per released source, and the confirmation of its winner."""

    nodeid: str
    pin: int | None = None                         # index into the lab's pinned settings once found
    base: list = field(default_factory=lambda: [0, 0])               # pinned failures, executions
    released: dict = field(default_factory=dict)   # source -> [failures, executions]
    done: set = field(default_factory=set)         # sources decided (either way)
    digests: list = field(default_factory=list)    # failure digests under threads
    failing_order: list | None = None              # the tests of an order in which it failed
    polluter: str | None = None
    state: list = field(default_factory=list)      # StateChange records the polluter leaves
    pinned_tries: list = field(default_factory=list)   # (seed, hash seed, failures, executions)
    chunks: dict = field(default_factory=dict)     # source -> chunks of released rounds run
    confirmed_source: str | None = None            # the source pinned alone in the confirmation
    confirmation: tuple | None = None              # its (failures, executions)
    not_drawn: tuple = ()                          # RNG families detection saw it never consume
    examples: dict = field(default_factory=dict)   # source -> settings of some failing executions

    def example(self, source: str, setting: dict, most: int = 4) -> None:
        """Keep a failing execution's settings under *source* (for the repro), a few at most."""
        kept = self.examples.setdefault(source, [])
        if len(kept) < most and setting not in kept:
            kept.append(setting)

    def p(self, source: str) -> float:
        """Fisher's exact p of the source's released counts against the pinned baseline."""
        f, n = self.released.get(source, (0, 0))
        return fisher_exact(f, n - f, self.base[0], self.base[1] - self.base[0])

    def significant(self) -> list[str]:
        """Sources whose release alone made it fail significantly more often, strongest first."""
        found = [s for s in self.released if self.released[s][0] and self.p(s) < SIGNIFICANT]
        return sorted(found, key=lambda s: (self.p(s), s))

    def winner(self) -> str | None:
        sig = self.significant()
        return sig[0] if sig else None

    def confirmation_of(self, source: str) -> tuple | None:
        """The confirmation counts when they are about *source*."""
        return self.confirmation if self.confirmed_source == source else None

    def confirmed(self) -> bool:
        """Its winner was confirmed: pinned alone, with the rest released, the failures vanished."""
        winner = self.winner()
        got = self.confirmation_of(winner) if winner else None
        return got is not None and got[1] > 0 and got[0] == 0
