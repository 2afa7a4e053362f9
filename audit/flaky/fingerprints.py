"""Cheap fingerprints of the three global generators, read at every traced line.

The tracer compares them between checkpoints: any draw advances a generator's state, so a
changed fingerprint means a draw (or a seed, which each class tells apart) happened since.

* torch's default CPU generator: its serialized state (about 8 us to read), which catches draws
  made inside C++ too (dropout, ``nn.init``, ``randperm``/``random_split``, Beta/Dirichlet, the
  seed a DataLoader iterator draws);
* numpy's legacy global ``RandomState``: MT19937 key and position read in place via ctypes;
* python's ``random`` module instance: its MT state read in place.
"""

from __future__ import annotations

import ctypes
import random

MT_LEN = 624


class TorchState:
    """The default CPU generator: full state bytes, and whether a change was a (re)seed."""

    def __init__(self):
        import torch

        self.gen = torch.default_generator
        self.torch = torch
        self._fresh: dict[int, bytes] = {}

    def read(self) -> bytes:
        return self.gen.get_state().numpy().tobytes()

    def seeded_state(self, before: bytes, after: bytes) -> bool:
        """True when *after* is the state manual_seed(initial_seed) gives: a seed, not a draw."""
        seed = self.gen.initial_seed()
        fresh = self._fresh.get(seed)
        if fresh is None:
            fresh = self.torch.Generator().manual_seed(seed).get_state().numpy().tobytes()
            self._fresh[seed] = fresh
        return after == fresh or after[:8] != before[:8]  # the first field is the initial seed


class NumpyState:
    """numpy's legacy global RandomState, read in place (key[0], key[1], key[623], pos)."""

    def __init__(self):
        import numpy as np

        self.np = np
        self.views = None
        try:
            addr = np.random.mtrand._rand._bit_generator.ctypes.state_address
            u32 = ctypes.c_uint32
            views = (u32.from_address(addr), u32.from_address(addr + 4),
                     u32.from_address(addr + 4 * (MT_LEN - 1)), ctypes.c_int.from_address(addr + 4 * MT_LEN))
            _, key, pos, *_ = np.random.get_state(legacy=True)
            if (views[0].value, views[1].value, views[2].value, views[3].value) == \
                    (int(key[0]), int(key[1]), int(key[-1]), int(pos)):
                self.views = views
        except Exception:  # an unknown layout: fall back to the slow public API
            self.views = None

    def read(self) -> tuple:
        if self.views is not None:
            v = self.views
            return (v[0].value, v[1].value, v[2].value, v[3].value)
        _, key, pos, has_gauss, gauss = self.np.random.get_state(legacy=True)
        return (int(key[0]), int(key[1]), int(key[-1]), int(pos), has_gauss, gauss)

    @staticmethod
    def seeded_state(fp: tuple) -> bool:
        """MT19937 integer seeding (np.random.seed(N)) leaves pos at 624 and key[1] derived from key[0]."""
        k0, k1, _, pos = fp[:4]
        return pos == MT_LEN and k1 == (1812433253 * (k0 ^ (k0 >> 30)) + 1) & 0xFFFFFFFF


class RandomState:
    """python's random module instance: its MT index and two state words, read in place."""

    def __init__(self):
        self.inst = random._inst
        self.views = None
        try:
            base = id(self.inst) + object.__basicsize__
            views = (ctypes.c_int.from_address(base), ctypes.c_uint32.from_address(base + 4),
                     ctypes.c_uint32.from_address(base + 4 * MT_LEN))
            state = self.inst.getstate()[1]
            if (views[0].value, views[1].value, views[2].value) == (state[-1], state[0], state[MT_LEN - 1]):
                self.views = views
        except Exception:
            self.views = None

    def read(self) -> tuple:
        if self.views is not None:
            v = self.views
            return (v[0].value, v[1].value, v[2].value)
        state = self.inst.getstate()[1]
        return (state[-1], state[0], state[MT_LEN - 1])

