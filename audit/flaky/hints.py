"""Fix suggestions per flakiness cause, naming the place: the hint a reviewer would write.

Pure functions over what attribution found (the source, its status, counts and evidence, the
state a polluter leaves as :class:`StateChange` records) and what tracing saw (draw sites, call
paths, ``torch.empty`` sites; see audit.flaky.tracing), so the attribution engine and the
reporters can share them. :func:`make_cause` builds a :class:`audit.model.flaky.Cause`.
"""

from __future__ import annotations

import math

from audit.flaky import sources
from audit.flaky.sources import FAMILIES
from audit.model.flaky import Cause, Counts, Site, StateChange

# names on a draw site's line that tell what drew (see "names" in a trace record's site)
_SPLIT = {"random_split", "randperm"}
_DROPOUT = {"dropout", "Dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"}
_DISTRIBUTIONS = {"sample", "rsample", "Beta", "Dirichlet", "Normal", "Categorical", "Bernoulli", "Gamma",
                  "Uniform", "MultivariateNormal", "distributions"}
_INIT = {"Linear", "Conv1d", "Conv2d", "Conv3d", "Embedding", "LSTM", "GRU", "RNN", "MultiheadAttention",
         "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "normal_", "uniform_",
         "trunc_normal_", "orthogonal_"}
_TORCH_FUNCS = ("randn_like", "rand_like", "randint_like", "randn", "rand", "randint", "normal", "bernoulli",
                "multinomial", "poisson", "randperm")


def where(site: dict) -> str:
    """``path:line`` of a site."""
    return f"{site['path']}:{site['line']}"


def _fixtures(call_path) -> list[str]:
    return [p.split(":", 1)[1] for p in call_path or () if p.startswith("fixture:")]


def _test_of(call_path, nodeid) -> str | None:
    return nodeid or (call_path[0] if call_path else None)


def is_test_file(path: str) -> bool:
    """True for test modules and conftest files (where a fix is a test change, not a code change)."""
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py" or "/tests/" in f"/{path}"


def sites_from_trace(record: dict | None, family: str) -> tuple[list[dict], list[str]]:
    """The sites where a test drew from *family* unseeded, code under test before the test's own
    lines, and the call path to the first; ([], []) when the trace saw none."""
    if not record:
        return [], []
    found = [s for s in record.get("draws", {}).get(family, {}).get("sites", []) if s.get("unseeded")]
    found.sort(key=lambda s: (is_test_file(s["path"]), s["path"], s["line"]))
    paths = found[0].get("call_paths") if found else None
    return found, list(paths[0]) if paths else []


def describe_state(changes) -> str | None:
    """What a polluter leaves, in words: "os.environ['X'] = '2'; ... left behind". RNG stream
    positions are named only when nothing else changed."""
    telling = [c for c in changes if c.kind != "rng"] or list(changes)
    if not telling:
        return None
    return "; ".join(_state_words(c) for c in telling[:3]) + " left behind"


def _state_words(change: StateChange) -> str:
    kind, name, after = change.kind, change.name, change.after
    if kind == "env":
        return f"os.environ[{name!r}] removed" if after is None else f"os.environ[{name!r}] = {after!r}"
    if kind == "dtype":
        return f"torch.get_default_dtype() = {after}"
    if kind == "grad":
        return f"torch.is_grad_enabled() = {after}"
    if kind == "cwd":
        return f"the working directory {after}"
    if kind == "global":
        return f"module global {name} = {after}"
    return f"the global {name} RNG stream position"


# ---------------------------------------------------------------- per source

def _torch_hint(site: dict, call_path, nodeid) -> str:
    names = set(site.get("names") or ())
    at = f"{where(site)} ({site['function']})"
    fixtures = _fixtures(call_path)
    test = _test_of(call_path, nodeid)
    if fixtures:
        fixture = fixtures[-1]
        what = next((n for n in ("random_split", "randperm", *_TORCH_FUNCS) if n in names), None)
        where_fix = f"pass generator= to {what} at {at}" if what else f"draw from a seeded torch.Generator at {at}"
        return (f"seed the generator in fixture `{fixture}` (torch.manual_seed, or a torch.Generator it owns) "
                f"or {where_fix}: the fixture draws from the global torch RNG, so what every test sharing "
                f"it sees depends on the stream")
    built = site.get("loader_built_at")
    via = " ".join(site.get("via") or ())
    if built or "DataLoader" in via or "DataLoaderIter" in via:
        made = f" (built at {where(built)} in {built['function']})" if built else ""
        return (f"the DataLoader iterated at {at}{made} draws its shuffle seed from the global torch RNG: "
                f"pass generator=torch.Generator().manual_seed(N) to the DataLoader"
                f"{' in ' + built['function'] if built else ''}, or seed torch in {test}")
    if names & _SPLIT:
        api = sorted(names & _SPLIT)[0]
        return f"pass generator=torch.Generator().manual_seed(N) to {api} at {at}, or seed torch in {test}"
    if names & _DROPOUT:
        return (f"dropout at {at} draws from the global torch RNG while the model is in training mode: "
                f"call model.eval() before comparing outputs in {test} (or seed torch there)")
    if names & _DISTRIBUTIONS:
        return (f"the torch.distributions sample at {at} uses the global torch RNG (it takes no generator): "
                f"seed torch in {test}, or draw it under torch.random.fork_rng() with torch.manual_seed")
    if names & _INIT:
        return (f"parameter initialisation at {at} draws from the global torch RNG: build the model under "
                f"torch.manual_seed (or torch.random.fork_rng) in {test}")
    api = next((n for n in _TORCH_FUNCS if n in names), None)
    if api:
        return (f"torch.{api} at {at} draws from the global torch RNG: give it a seeded torch.Generator "
                f"(generator=) or seed torch (torch.manual_seed) in {test}")
    return f"the global torch RNG is drawn at {at}: seed it (torch.manual_seed) in {test} or use a seeded torch.Generator"


def _numpy_hint(site: dict, call_path, nodeid) -> str:
    at = f"{where(site)} ({site['function']})"
    test = _test_of(call_path, nodeid)
    if site.get("kind") == "entropy":
        return (f"np.random.default_rng() at {at} is seeded from OS entropy: pass a seed "
                f"(np.random.default_rng(seed)) from {test}")
    fixtures = _fixtures(call_path)
    scope = f"fixture `{fixtures[-1]}`" if fixtures else test
    return (f"np.random's global state is drawn at {at}: use a seeded generator there "
            f"(np.random.default_rng(seed), or the seed argument the function takes) and pass the seed from "
            f"{scope}, or call np.random.seed in it")


def _random_hint(site: dict, call_path, nodeid) -> str:
    at = f"{where(site)} ({site['function']})"
    test = _test_of(call_path, nodeid)
    fixtures = _fixtures(call_path)
    scope = f"fixture `{fixtures[-1]}`" if fixtures else test
    return (f"python's module-level random is drawn at {at}: give {site['function'].rsplit('.', 1)[-1]} a "
            f"random.Random(seed) instance, or call random.seed in {scope}")


def _entropy_hint(site: dict, call_path, nodeid) -> str:
    at = f"{where(site)} ({site['function']})"
    return (f"OS entropy (os.urandom, uuid, secrets, SystemRandom or an unseeded torch.Generator) is read at {at}: "
            f"pass a seeded random.Random / torch.Generator().manual_seed(N) in, or patch the call in the test "
            f"(monkeypatch.setattr)")


def tolerance_for(deviation: float) -> float:
    """A tolerance that holds with margin: ten times the deviation seen, rounded up to a power of 10."""
    if not deviation or deviation <= 0 or not math.isfinite(deviation):
        return 1e-6
    return 10.0 ** math.ceil(math.log10(deviation * 10) - 1e-9)   # 1e-7 * 10 is a hair above 1e-6


def _threads_hint(sites, nodeid, deviation) -> str:
    at = f" at {where(sites[0])} ({sites[0]['function']})" if sites else ""
    test = nodeid or "the test"
    if deviation is None:
        return (f"the result{at} changes with the torch thread count (float reductions split differently): "
                f"compare with torch.allclose(..., atol=...) or pytest.approx instead of == in {test}")
    tol = tolerance_for(deviation)
    return (f"the result{at} moves by up to {deviation:.3g} between thread counts: compare with "
            f"torch.allclose(..., atol={tol:g}) or pytest.approx(abs={tol:g}) instead of == in {test}")


def _determinism_hint(empty_sites, nodeid) -> str:
    if empty_sites:
        s = empty_sites[0]
        call = s.get("call", "torch.empty")
        better = "new_zeros" if call.endswith("new_empty") else "torch.zeros" if call == "torch.empty" else \
            "torch.zeros_like" if call == "torch.empty_like" else "torch.zeros"
        return (f"replace {call} with {better} at {where(s)} ({s['function']}): its memory is read before it "
                f"is written, and torch.use_deterministic_algorithms fills it with NaN")
    return (f"{nodeid or 'the test'} fails under torch.use_deterministic_algorithms(True): look for a torch.empty "
            f"whose memory is read unwritten, or an op without a deterministic implementation")


def _order_hint(polluter, state, nodeid) -> str:
    who = polluter or "an earlier test"
    victim = nodeid or "this test"
    telling = [c for c in state if c.kind != "rng"]
    words = (describe_state(state) or "").removesuffix(" left behind")
    env = next((c for c in telling if c.kind == "env"), None)
    if env is not None:
        undo = (f"delete os.environ['{env.name}'] with monkeypatch.delenv" if env.after is None else
                f"set os.environ['{env.name}'] with monkeypatch.setenv")
        return f"{who} leaves {words} behind: {undo} in {who} so it is undone, and {victim} passes in any order"
    if any(c.kind == "dtype" for c in telling):
        return (f"{who} leaves {words} behind: restore torch.set_default_dtype in a fixture (yield, then reset) "
                f"so {victim} passes in any order")
    if telling:
        return f"{who} leaves {words} behind: undo it with monkeypatch (or a fixture) in {who}"
    if state:
        return f"{victim} depends on the RNG stream position {who} leaves: seed it in {victim} itself"
    return f"{victim} fails after {who} runs: undo the global state {who} changes (monkeypatch or a fixture)"


def hint(source: str, *, sites=(), call_path=(), nodeid: str | None = None, deviation: float | None = None,
         empty_sites=(), polluter: str | None = None, state=(), tried=(), trace_error: str | None = None) -> str:
    """The suggestion for one cause, naming the place. *sites* are trace sites (dicts with path,
    line, function and, when traced, names/via/kind); *state* the polluter's StateChange list."""
    sites = list(sites or ())
    if source in FAMILIES:
        if not sites and trace_error:
            return (f"{nodeid or 'the test'} consumes the global {source} RNG unseeded: seed it in the test "
                    f"(tracing failed, so the draw site is not known: {trace_error})")
        if not sites and source == "entropy":
            return (f"{nodeid or 'the test'} reads OS entropy (os.urandom, uuid, secrets, SystemRandom or an "
                    f"unseeded torch.Generator): pass a seeded generator in (no project call site was traced)")
        if not sites:
            return (f"{nodeid or 'the test'} consumes the global {source} RNG unseeded: seed it in the test "
                    f"(no project draw site was traced)")
        site = sites[0]
        text = {"torch": _torch_hint, "numpy": _numpy_hint, "random": _random_hint,
                "entropy": _entropy_hint}[source](site, call_path, nodeid)
        others = [where(s) for s in sites[1:4]]
        return text + (f" (also drawn at {', '.join(others)})" if others else "")
    if source == "threads":
        return _threads_hint(sites, nodeid, deviation)
    if source == "determinism":
        text = _determinism_hint(list(empty_sites or ()), nodeid)
        if not empty_sites and trace_error:
            text += f" (tracing failed, so no torch.empty site is known: {trace_error})"
        return text
    if source == "order":
        return _order_hint(polluter, list(state or ()), nodeid)
    if source == "hashseed":
        at = f" at {where(sites[0])} ({sites[0]['function']})" if sites else ""
        return (f"set or dict-of-str iteration order{at} changes with PYTHONHASHSEED: iterate in a fixed order "
                f"(sorted(...)) instead of set order")
    registered = sources.registry().get(source)
    if registered is not None and registered.hint is not None:
        return registered.hint(sites=sites, call_path=call_path, nodeid=nodeid, polluter=polluter, state=state)
    if not tried:
        return "not attributed: the budget ended before any source was released; give it a larger --budget"
    return (f"no single source explains the failures (tried: {', '.join(tried)}, none changed the failure rate "
            f"when released alone): look for an interaction of two sources, time, network or filesystem state")


def make_cause(source: str, p_value: float | None, evidence: str, *, status: str | None = None,
               counts: Counts | None = None, nodeid: str | None = None, trace: dict | None = None,
               trace_error: str | None = None, sites=None, call_path=None, polluter: str | None = None,
               state=(), deviation: float | None = None, tried=(), more_runs: int | None = None) -> Cause:
    """One cause of a flaky test. For an RNG family, sites and call path come from the test's trace
    record when not given; for determinism, the record's torch.empty sites. *trace_error* (or the
    record's own) says why tracing could not name the sites. *status* is ``suspected`` unless the
    caller confirmed it (or, ``undetermined``, the budget ended before its test decided: *more_runs*
    says about how many more would); an ``unknown`` cause has no p-value."""
    if source != sources.UNKNOWN:
        sources.get(source)   # raises for a name no package registered
    status = status or (sources.UNKNOWN if source == sources.UNKNOWN else "suspected")
    if (source == sources.UNKNOWN) != (status == sources.UNKNOWN):
        raise ValueError(f"a {source!r} cause cannot have status {status!r}")
    if status == sources.UNKNOWN and p_value is not None:
        raise ValueError("an unknown cause has no p-value: no source was shown to change the outcome")
    empty_sites = (trace or {}).get("empty_sites", [])
    traced = source in FAMILIES or source == "determinism"
    if sites is None:
        if source in FAMILIES:
            sites, traced_path = sites_from_trace(trace, source)
            call_path = call_path if call_path is not None else traced_path
        elif source == "determinism":
            sites = empty_sites
            call_path = call_path if call_path is not None else (empty_sites[0].get("call_path", []) if empty_sites else [])
        else:
            sites = []
    trace_error = (trace_error or (trace or {}).get("trace_error")) if traced else None
    nodeid = nodeid or (trace or {}).get("nodeid")
    state = list(state or ()) if source == "order" else []
    text = hint(source, sites=sites, call_path=call_path or [], nodeid=nodeid, deviation=deviation,
                empty_sites=empty_sites, polluter=polluter, state=state, tried=tried, trace_error=trace_error)
    return Cause(source=source, status=status, p_value=None if p_value is None else float(p_value),
                 evidence=evidence, hint=text, counts=counts,
                 sites=[Site(s["path"], int(s["line"]), s.get("function") or "") for s in sites],
                 call_path=list(call_path or []), polluter=polluter if source == "order" else None,
                 state=state, trace_error=trace_error,
                 more_runs=more_runs if status == "undetermined" else None)
