"""The seed of the test suite: `SLIMKIT_TEST_SEED` (default 0).

Every test that trains and asserts a falling loss or an accuracy is seeded
with it (in this process by conftest, in the scripts by `--random_seed`), so
that the default run is repeatable and the same thresholds can be checked
for other seeds:

  SLIMKIT_TEST_SEED=3 python -m pytest -q tests/test_train_eval.py
"""

import os

SEED = int(os.environ.get('SLIMKIT_TEST_SEED', '0'))
