"""Fix suggestions per flakiness cause, naming the place: the hint a reviewer would write.

Pure functions over what attribution found (the source, the p-value and evidence) and what
tracing saw (draw sites, call paths, ``torch.empty`` sites; see audit.flaky.trace), so the
attribution engine and the reporters can share them. :func:`make_cause` builds the ``causes``
entry of the flaky JSON (issue 4's format).
"""

from __future__ import annotations

import math
import re

from audit.flaky import sources
from audit.flaky.sources import FAMILIES

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


def _plain(site: dict) -> dict:
    return {"path": site["path"], "line": site["line"], "function": site["function"]}


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


def tolerance_for(deviation: float) -> float:
    """A tolerance that holds with margin: ten times the deviation seen, rounded up to a power of 10."""
    if not deviation or deviation <= 0 or not math.isfinite(deviation):
        return 1e-6
    return 10.0 ** math.ceil(math.log10(deviation * 10))


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


_ENV = re.compile(r"os\.environ\[\s*['\"]([^'\"]+)['\"]\s*\]")


def _order_hint(polluter, state, nodeid) -> str:
    who = polluter or "an earlier test"
    victim = nodeid or "this test"
    state = re.sub(r"\s*left behind\s*$", "", state or "")
    env = _ENV.search(state)
    if env or "environ" in state:
        var = env.group(1) if env else "the variable"
        return (f"{who} leaves {state or 'an environment variable'} behind: set os.environ['{var}'] with "
                f"monkeypatch.setenv in {who} so it is undone, and {victim} passes in any order")
    if "dtype" in state:
        return (f"{who} leaves {state} behind: restore torch.set_default_dtype in a fixture (yield, then reset) "
                f"so {victim} passes in any order")
    if "rng" in state.lower() or "stream" in state or "seed" in state:
        return f"{victim} depends on the RNG stream position {who} leaves: seed it in {victim} itself"
    if state:
        return f"{who} leaves {state} behind: undo it with monkeypatch (or a fixture) in {who}"
    return f"{victim} fails after {who} runs: undo the global state {who} changes (monkeypatch or a fixture)"


def hint(source: str, *, sites=(), call_path=(), nodeid: str | None = None, deviation: float | None = None,
         empty_sites=(), polluter: str | None = None, state: str | None = None, tried=()) -> str:
    """The suggestion for one cause, naming the place. *sites* are trace sites (dicts with path,
    line, function and, when traced, names/via/kind)."""
    sites = list(sites or ())
    if source in ("torch", "numpy", "random"):
        if not sites:
            return (f"{nodeid or 'the test'} consumes the global {source} RNG unseeded: seed it in the test "
                    f"(no project draw site was traced)")
        site = sites[0]
        text = {"torch": _torch_hint, "numpy": _numpy_hint, "random": _random_hint}[source](site, call_path, nodeid)
        others = [where(s) for s in sites[1:4]]
        return text + (f" (also drawn at {', '.join(others)})" if others else "")
    if source == "threads":
        return _threads_hint(sites, nodeid, deviation)
    if source == "determinism":
        return _determinism_hint(list(empty_sites or ()), nodeid)
    if source == "order":
        return _order_hint(polluter, state, nodeid)
    if source == "hashseed":
        at = f" at {where(sites[0])} ({sites[0]['function']})" if sites else ""
        return (f"set or dict-of-str iteration order{at} changes with PYTHONHASHSEED: iterate in a fixed order "
                f"(sorted(...)) instead of set order")
    registered = sources.registry().get(source)
    if registered is not None and registered.hint is not None:
        return registered.hint(sites=sites, call_path=call_path, nodeid=nodeid, polluter=polluter, state=state)
    tried_text = f" (tried: {', '.join(tried)})" if tried else ""
    return (f"no single source explains the failures{tried_text}: look for an interaction of two sources, "
            f"time, network or filesystem state")


def make_cause(source: str, p_value: float, evidence: str, *, nodeid: str | None = None,
               trace: dict | None = None, sites=None, call_path=None, polluter: str | None = None,
               state: str | None = None, deviation: float | None = None, tried=()) -> dict:
    """One ``causes`` entry of the flaky JSON. For an RNG family, sites and call path come from the
    test's trace record when not given; for determinism, the record's torch.empty sites."""
    if source != sources.UNKNOWN:
        sources.get(source)   # raises for a name no package registered
    empty_sites = (trace or {}).get("empty_sites", [])
    if sites is None:
        if source in FAMILIES:
            sites, traced_path = sites_from_trace(trace, source)
            call_path = call_path if call_path is not None else traced_path
        elif source == "determinism":
            sites = empty_sites
            call_path = call_path if call_path is not None else (empty_sites[0].get("call_path", []) if empty_sites else [])
        else:
            sites = []
    nodeid = nodeid or (trace or {}).get("nodeid")
    text = hint(source, sites=sites, call_path=call_path or [], nodeid=nodeid, deviation=deviation,
                empty_sites=empty_sites, polluter=polluter, state=state, tried=tried)
    return {"source": source, "p_value": float(p_value), "evidence": evidence,
            "sites": [_plain(s) for s in sites], "call_path": list(call_path or []),
            "polluter": polluter if source == "order" else None, "hint": text}
