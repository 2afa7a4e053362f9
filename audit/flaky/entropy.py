"""OS entropy as a flaky source the plugin can pin and release.

``os.urandom``, ``uuid.uuid4``/``uuid1``, ``secrets`` and ``random.SystemRandom`` (the ``entropy``
family), numpy's entropy-seeded generators (``default_rng()``, ``Generator(PCG64())``,
``SeedSequence()``: the ``numpy`` family) and ``torch.Generator().seed()`` (``entropy``) read the
operating system's randomness, which no ``seed()`` call reaches. While a test runs with the
family seeded, :class:`Entropy` routes those reads to a ``random.Random`` stream seeded from the
unit's seed instead; with the family unseeded (or outside a test) every call goes to the
original, so a user's ordinary run is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import uuid


class Entropy:
    """The patched entry points and the two streams behind them (None: pass through)."""

    def __init__(self):
        self.stream: random.Random | None = None        # the entropy family
        self.numpy_stream: random.Random | None = None  # numpy's entropy-seeded generators
        self.numpy_draws = 0
        self._originals: list[tuple[object, str, object]] = []
        self._numpy_done = self._torch_done = False
        self._install_stdlib()

    # ---- seeding --------------------------------------------------------------------------
    def seed(self, seed: int) -> None:
        self.stream = random.Random(seed)

    def seed_numpy(self, seed: int) -> None:
        self.numpy_stream = random.Random(("numpy-entropy", seed).__repr__())

    def release(self) -> None:
        """Back to the operating system's entropy (between tests)."""
        self.stream = self.numpy_stream = None

    def getstate(self):
        return self.stream.getstate() if self.stream is not None else None

    def setstate(self, state) -> None:
        if state is not None and self.stream is not None:
            self.stream.setstate(state)

    def digest(self) -> str:
        return hashlib.blake2b(repr(self.getstate()).encode(), digest_size=6).hexdigest()

    # ---- the entry points -----------------------------------------------------------------
    def _patch(self, owner, name: str, replacement) -> None:
        self._originals.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def _install_stdlib(self) -> None:
        me = self
        urandom, uuid1 = os.urandom, uuid.uuid1
        sysrandom = random.SystemRandom
        real_random, real_bits, real_bytes = sysrandom.random, sysrandom.getrandbits, sysrandom.randbytes

        def pinned_urandom(n):
            return me.stream.randbytes(n) if me.stream is not None else urandom(n)

        def pinned_uuid1(node=None, clock_seq=None):
            if me.stream is None:
                return uuid1(node, clock_seq)
            return uuid.UUID(bytes=me.stream.randbytes(16), version=1)

        def sys_random(self):
            return me.stream.random() if me.stream is not None else real_random(self)

        def sys_bits(self, k):
            return me.stream.getrandbits(k) if me.stream is not None else real_bits(self, k)

        def sys_bytes(self, n):
            return me.stream.randbytes(n) if me.stream is not None else real_bytes(self, n)

        self._patch(os, "urandom", pinned_urandom)        # uuid.uuid4 reads os.urandom
        self._patch(uuid, "uuid1", pinned_uuid1)
        for name, fn in (("random", sys_random), ("getrandbits", sys_bits), ("randbytes", sys_bytes)):
            self._patch(sysrandom, name, fn)               # secrets uses a SystemRandom instance

    def install_numpy(self) -> None:
        """Route numpy's entropy reads (SeedSequence's 128 bits) once numpy is imported."""
        numpy = sys.modules.get("numpy")
        bitgen = getattr(getattr(numpy, "random", None), "bit_generator", None)
        if self._numpy_done or bitgen is None or not hasattr(bitgen, "randbits"):
            return
        self._numpy_done = True
        me, real = self, bitgen.randbits

        def randbits(k):
            if me.numpy_stream is None:
                return real(k)
            me.numpy_draws += 1
            return me.numpy_stream.getrandbits(k)

        self._patch(bitgen, "randbits", randbits)

    def install_torch(self) -> None:
        """``torch.Generator().seed()`` seeds from the pinned stream once torch is imported."""
        torch = sys.modules.get("torch")
        if self._torch_done or torch is None or not hasattr(torch, "Generator"):
            return
        self._torch_done = True
        me, base = self, torch.Generator

        class _Meta(type(base)):
            """Generators torch makes itself (``torch.default_generator``) still pass isinstance."""

            def __instancecheck__(cls, obj):
                return isinstance(obj, base)

            def __subclasscheck__(cls, sub):
                return issubclass(sub, base)

        class Generator(base, metaclass=_Meta):
            __doc__ = base.__doc__

            def seed(self):
                if me.stream is None:
                    return base.seed(self)
                value = me.stream.getrandbits(63)
                self.manual_seed(value)
                return value

        Generator.__name__ = Generator.__qualname__ = "Generator"
        Generator.__module__ = "torch"
        self._patch(torch, "Generator", Generator)

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()
