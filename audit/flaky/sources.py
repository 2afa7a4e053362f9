"""The flaky sources ml-audit knows: their names, where they act and how each is pinned and released.

Detection varies them, attribution releases them one at a time, hints and reports name them;
all of those read this one registry. The built-in sources register through the entry-point
group ``ml_audit.sources`` like a third-party package's would::

    [project.entry-points."ml_audit.sources"]
    builtin = "audit.flaky.sources:BUILTIN"

An entry point names a :class:`Source` or an iterable of them. A third-party source is then a
known cause name (``make_cause`` accepts it, reports label it) with its own ``hint``; the
experiments drive the sources whose ``arm`` they implement.

Importing this module reads no entry points (the pytest plugin imports it inside every run):
:func:`registry` loads them on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

GROUP = "ml_audit.sources"

IN_PROCESS = "in-process"            # varied between executions inside one interpreter
PER_INTERPRETER = "per-interpreter"  # fixed when an interpreter starts: one value per interpreter


@dataclass(frozen=True)
class Source:
    """One source of flakiness."""

    name: str                    # as the JSON and the CLI spell it: "torch", "hashseed", ...
    label: str                   # in a sentence: "torch RNG"
    scope: str                   # IN_PROCESS or PER_INTERPRETER
    pinned: str                  # how it is held fixed
    released: str                # how it is let vary
    arm: str = ""                # the experiment that releases it: rng | threads | determinism | hashseed | order
    hint: Callable[..., str] | None = None   # fix suggestion for a third-party source (hints' keywords)

    @property
    def unit(self) -> str:
        """What one observation of this source counts: an execution or a whole interpreter."""
        return "executions" if self.scope == IN_PROCESS else "interpreters"


BUILTIN = (
    Source("torch", "torch RNG", IN_PROCESS, "torch.manual_seed(N) at each test's setup",
           "a fresh seed per execution", arm="rng"),
    Source("numpy", "numpy RNG", IN_PROCESS, "np.random.seed(N) at each test's setup; default_rng(), "
           "Generator(PCG64()) and SeedSequence() without a seed read a stream seeded from N",
           "a fresh seed per execution", arm="rng"),
    Source("random", "python random", IN_PROCESS, "random.seed(N) at each test's setup",
           "a fresh seed per execution", arm="rng"),
    Source("entropy", "OS entropy", IN_PROCESS, "os.urandom, uuid4/uuid1, secrets, random.SystemRandom and "
           "torch.Generator().seed() read a stream seeded with N at each test's setup",
           "a fresh seed per execution", arm="rng"),
    Source("threads", "threads", IN_PROCESS, "torch.set_num_threads at the machine's default",
           "thread counts cycled between executions", arm="threads"),
    Source("determinism", "determinism", IN_PROCESS, "torch.use_deterministic_algorithms off",
           "deterministic algorithms on", arm="determinism"),
    Source("hashseed", "hash seed", PER_INTERPRETER, "PYTHONHASHSEED fixed",
           "a new PYTHONHASHSEED per interpreter", arm="hashseed"),
    Source("order", "order", PER_INTERPRETER, "file order",
           "reversed and shuffled whole-suite orders", arm="order"),
)

# The RNG families the pytest plugin seeds (a constant: the plugin must not scan entry points).
FAMILIES = tuple(s.name for s in BUILTIN if s.arm == "rng")
UNKNOWN = "unknown"              # the cause name when no source explains the failures

_loaded: dict[str, Source] | None = None


def _entry_points():
    from importlib.metadata import entry_points

    return entry_points(group=GROUP)


def _as_sources(value) -> list[Source]:
    items = [value] if isinstance(value, Source) else list(value) if isinstance(value, (list, tuple)) else [value]
    bad = [i for i in items if not isinstance(i, Source)]
    if bad:
        raise TypeError(f"an {GROUP} entry point must name Source objects, not {type(bad[0]).__name__}")
    return items


def load(entry_points: Iterable | None = None) -> dict[str, Source]:
    """Every registered source by name, built-ins first; a later source may not reuse a name.
    The built-ins count as registered when the installed metadata lacks their entry point (a
    source checkout run without installing)."""
    eps = list(_entry_points() if entry_points is None else entry_points)
    found: dict[str, Source] = {}
    if not any(ep.value == f"{__name__}:BUILTIN" for ep in eps):
        found.update((s.name, s) for s in BUILTIN)
    for ep in sorted(eps, key=lambda ep: ep.value != f"{__name__}:BUILTIN"):
        for source in _as_sources(ep.load()):
            if source.name in found and found[source.name] is not source:
                raise ValueError(f"flaky source {source.name!r} registered twice (again by {ep.value})")
            found[source.name] = source
    return found


def registry() -> dict[str, Source]:
    """The registered sources by name (entry points read once per process)."""
    global _loaded
    if _loaded is None:
        _loaded = load()
    return _loaded


def get(name: str) -> Source:
    try:
        return registry()[name]
    except KeyError:
        known = ", ".join([*registry(), UNKNOWN])
        raise ValueError(f"unknown source {name!r}; expected one of {known}") from None


def label(name: str) -> str:
    """The source's name in a sentence ("torch RNG"); the name itself when not registered."""
    source = registry().get(name)
    return source.label if source else name


def names(*, arm: str | None = None, scope: str | None = None) -> tuple[str, ...]:
    """Registered source names, in registration order, optionally of one arm or scope."""
    return tuple(s.name for s in registry().values()
                 if (arm is None or s.arm == arm) and (scope is None or s.scope == scope))
