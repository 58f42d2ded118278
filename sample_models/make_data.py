"""Write digits.npz from the copy of the UCI handwritten digits inside scikit-learn's wheel.

Run once (needs scikit-learn): ``python sample_models/make_data.py``. The result is shipped,
so nothing else needs scikit-learn.
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

digits = load_digits()
x = (digits.data / 16.0).astype(np.float32)
y = digits.target.astype(np.int64)
order = np.random.default_rng(0).permutation(len(y))
x, y = x[order], y[order]
np.savez_compressed(
    Path(__file__).resolve().parent / "digits.npz",
    x=x[:1500], y=y[:1500], x_test=x[1500:], y_test=y[1500:],
)
print(f"wrote digits.npz: {len(y)} samples, 64 features")
