"""Shared test setup."""

import keras
import pytest

from tests import seeding


@pytest.fixture(autouse=True)
def _seeded():
  """Seeds Python, NumPy, TensorFlow and Keras's initializers per test.

  Keras 3 draws its initializers from its own seed generator, which
  `tf.random.set_seed` does not reach: unseeded, a short training run
  occasionally starts from weights that do not learn in its few steps and a
  loss-falls assertion fails by chance. Seeding makes each test repeatable;
  it does not make a test easier, since the thresholds do not depend on it
  (`SLIMKIT_TEST_SEED=N` checks another seed; see seeding.py).
  """
  keras.utils.set_random_seed(seeding.SEED)
