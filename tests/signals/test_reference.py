"""The extractor reproduces the outputs saved from the implementation before the refactor.

The reference was written on one CPU; another CPU (vector width, BLAS kernels) may differ in the last
bits of a float32, so values are compared with a float32 tolerance (``rtol=1e-5, atol=1e-6``, about 100
units in the last place, far below any signal's meaningful resolution). Validity masks are exact.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from salus.signals import SIGNAL_NAMES

from .reference import REFERENCE, cases, stack

# float32 tolerance for a reference written on another machine (see the module docstring).
RTOL, ATOL = 1e-5, 1e-6


def _load() -> tuple[dict[str, np.ndarray], list[str]]:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(REFERENCE), framework="numpy") as f:
        names = json.loads((f.metadata() or {})["signal_names"])
    return load_file(str(REFERENCE)), names


@pytest.mark.parametrize("name", sorted(cases()))
def test_extractor_matches_saved_reference(name):
    ref, saved_names = _load()
    values, valid = stack(cases()[name](True))
    assert set(saved_names) <= set(SIGNAL_NAMES), "a saved signal was removed or renamed"
    cols = [SIGNAL_NAMES.index(n) for n in saved_names]  # compared by name: new signals may be added
    keys = [name, f"{name}_vec"] if f"{name}_vec.values" in ref else [name]
    for key in keys:  # B = 1: the old scalar path and the old batched path
        np.testing.assert_array_equal(valid[..., cols], ref[f"{key}.valid"], err_msg=key)
        np.testing.assert_allclose(values[..., cols], ref[f"{key}.values"], rtol=RTOL, atol=ATOL, err_msg=key)
    assert valid.mean() > 0.5 and (values[valid == 0] == 0).all()


def test_every_signal_has_one_computation():
    from salus.signals.definitions import SIGNAL_DEFINITIONS, SIGNAL_FUNCTIONS

    assert [f.definition for f in SIGNAL_FUNCTIONS] == list(SIGNAL_DEFINITIONS)
    assert len(set(SIGNAL_NAMES)) == len(SIGNAL_NAMES) >= 12
    for f in SIGNAL_FUNCTIONS:
        assert (f.step is not None) or (f.chunk is not None), f.definition.name
    per_chunk = [f.definition.name for f in SIGNAL_FUNCTIONS if f.chunk is not None]
    assert per_chunk[:4] == ["latent_drift", "ood_distance", "sample_entropy", "max_sample_probability"]
