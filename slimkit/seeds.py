"""One seed for a whole run: initialisers, dropout, augmentation, shuffling.

A run with `--random_seed=N` is a pure function of its flags on a given
machine: `seed_everything(N)` seeds Python, NumPy, TensorFlow and Keras (the
initialisers draw from Keras's global seed generator) and turns on TF's op
determinism. The random draws that happen at every step are stateless,
keyed on the seed and on where they happen, so that they do not depend on
thread scheduling or on which traced function ran them:

* dropout: on the seed, the global step and the replica (`Draws` handed to
  the net by the trainer), so a resumed run draws what the uninterrupted
  one would have;
* augmentation: on the seed and the element's index in its input pipeline's
  stream (`input_pipeline.make_dataset(seed=...)`), in any parallelism;
  MixUp and CutMix, which mix whole batches, on the seed and the batch's
  index in that stream.

Library code takes a `Draws` (or a seed tensor) as an argument; with none it
uses TensorFlow's stateful random ops exactly as before, so code that never
asks for a seed runs as it always did.

  draws = seeds.Draws(seeds.fold(run_seed, step))   # or Draws(None)
  flip = draws.uniform([]) < 0.5
"""

import secrets

import keras
import tensorflow as tf

# Seeds are drawn and accepted in [0, 2**31): every TF and NumPy API takes
# them, and they are short enough to read in a log line.
MAX_SEED = 2**31 - 1


def draw_seed():
  """A fresh seed in [0, MAX_SEED], from the OS's entropy."""
  return secrets.randbelow(MAX_SEED + 1)


def seed_everything(seed, op_determinism=True):
  """Seeds every generator and makes TensorFlow's ops deterministic.

  Call it once, before the first TensorFlow op of the process.

  Args:
    seed: An int in [0, MAX_SEED].
    op_determinism: Also `tf.config.experimental.enable_op_determinism()`.
      XLA refuses it for some gradients (max pooling's), so a run compiled
      with `--xla` is seeded without it.
  """
  keras.utils.set_random_seed(int(seed))
  if op_determinism:
    # On CPU this mostly fixes tf.data's element order; on GPUs it also
    # picks cuDNN's deterministic algorithms (see docs/training.md).
    tf.config.experimental.enable_op_determinism()


def fold(seed, *values):
  """A stateless seed (int64 `[2]`) derived from `seed` and `values`.

  Args:
    seed: An int, or an int `[2]` seed tensor.
    *values: Ints or int scalar tensors (a step, a replica id, an index);
      each different sequence gives an independent seed.

  Returns:
    An int64 `[2]` tensor for `tf.random.stateless_*` ops.
  """
  if isinstance(seed, int):
    seed = tf.constant([seed, 0], tf.int64)
  seed = tf.cast(seed, tf.int64)
  for value in values:
    seed = tf.random.experimental.stateless_fold_in(
        seed, tf.cast(value, tf.int64))
  return seed


def derive(seed, *values):
  """An int seed in [0, MAX_SEED] derived from `seed` and int `values`.

  For APIs that take an int seed (`tf.data.Dataset.shuffle`), e.g. the input
  of a run resumed at a step: `derive(run_seed, step)`.
  """
  return int(fold(int(seed), *values).numpy()[0]) % (MAX_SEED + 1)


class Draws:
  """The random draws of one call: stateless with a seed, TF's otherwise.

  Every draw gets its own seed, folded from the call's seed and the draw's
  position in the call (fixed when the function is traced), so that two
  calls with the same seed draw the same values.
  """

  def __init__(self, seed=None):
    """Creates the draws.

    Args:
      seed: An int `[2]` seed tensor, or None for TensorFlow's stateful
        random ops (the behaviour without `--random_seed`).
    """
    self.seed = seed
    self._count = 0

  def child(self, key):
    """Independent draws for a part of the call, keyed on the int `key`.

    Two children of the same key draw the same values (and do not advance
    this object's count): a part traced twice, as in both branches of a
    `tf.cond`, draws the same in each.
    """
    return Draws(None if self.seed is None else fold(self.seed, -1, key))

  def next_seed(self):
    """The seed of the next draw, or None without a seed."""
    if self.seed is None:
      return None
    self._count += 1
    return fold(self.seed, self._count)

  def uniform(self, shape=(), minval=0, maxval=None, dtype=tf.float32):
    """`tf.random.uniform`, stateless when the draws have a seed."""
    seed = self.next_seed()
    if seed is None:
      return tf.random.uniform(shape, minval, maxval, dtype=dtype)
    if maxval is None:
      maxval = 1
    return tf.random.stateless_uniform(shape, seed, minval, maxval,
                                       dtype=dtype)

  def gamma(self, shape, alpha, dtype=tf.float32):
    """`tf.random.gamma`, stateless when the draws have a seed."""
    seed = self.next_seed()
    if seed is None:
      return tf.random.gamma(shape, alpha, dtype=dtype)
    return tf.random.stateless_gamma(shape, seed, alpha=alpha, dtype=dtype)
