"""MixUp and CutMix of a training batch, with soft labels.

MixUp (Zhang et al., "mixup: Beyond Empirical Risk Minimization", 2017,
arXiv:1710.09412) blends every image with a partner: `lam * x + (1 - lam) *
x'`, and its one-hot label likewise. CutMix (Yun et al., "CutMix:
Regularization Strategy to Train Strong Classifiers with Localizable
Features", 2019, arXiv:1905.04899) pastes a box of the partner into the
image instead, and mixes the labels by the pasted area. As timm's `Mixup` in
its default batch mode:

* `lam ~ Beta(alpha, alpha)` is drawn once per batch, and the partner of
  image i is image `batch_size - 1 - i` (the batch reversed; the batch is a
  shuffled sample already, so this is a random pairing);
* CutMix's box has area `(1 - lam)` of the image, sides in the image's
  aspect ratio, its centre uniform over the image and its sides clipped at
  the border; `lam` is then recomputed from the pixels actually pasted, so
  that the labels weigh exactly what the image shows;
* with both alphas set, each batch gets one of the two, with equal
  probability.

Keras's `keras.layers.MixUp` and `keras.layers.CutMix` are not used (the
arithmetic here is one line each, compiled by XLA into one pass over the
batch). Their draws come from a `keras.random.SeedGenerator`, a variable:
keyed on the batch it would have to be reassigned for every batch in a
sequential stage, which caps the pipeline at one core's mixing rate; and
creating the layers creates that variable, which ParameterServerStrategy
refuses in a dataset function ("Creating variables in `dataset_fn` is not
allowed"). `CutMix` also fails on a tensor seed in a graph (`seed or ...`),
draws its strength from `factor` rather than Beta(alpha, alpha), reuses an
int seed for both corners of its box (the same relative position on both
axes) and weighs the labels by the box's real-valued area rather than by the
pixels it pastes (up to 6% apart at 32x32).

  mix = mixing.BatchMixer(num_classes=10, mixup_alpha=0.2, cutmix_alpha=1.0)
  images, soft_labels = mix(images, labels, seed=batch_seed)
"""

import tensorflow as tf

from slimkit import seeds

# Keys of the draws of each method (`Draws.child`): each is traced in its own
# branch, and a batch draws alike whichever branch is traced first.
_CHOICE_DRAWS, _MIXUP_DRAWS, _CUTMIX_DRAWS = 1, 2, 3


def check_alpha(name, alpha):
  """Returns `alpha` as a float; raises ValueError naming it when < 0."""
  try:
    value = float(alpha)
  except (TypeError, ValueError):
    value = float('nan')
  if not value >= 0.0:
    raise ValueError(f'{name} must be a number >= 0 (0: off), got {alpha!r}')
  return value


def sample_lam(alpha, draws):
  """One draw of Beta(alpha, alpha), from two gamma draws."""
  gammas = draws.gamma([2], alpha)
  # With a tiny alpha both can underflow to 0: lam is then 0, not NaN.
  return tf.math.divide_no_nan(gammas[0], gammas[0] + gammas[1])


def cutmix_box(height, width, lam, draws):
  """timm's CutMix box for `lam`, clipped at the border.

  Args:
    height: Image height (a Python int).
    width: Image width.
    lam: Scalar float: the share of the image to keep.
    draws: The `seeds.Draws` of the box's centre.

  Returns:
    `(mask bool [height, width], lam)`: the pixels to paste, and the share
    of the image they leave (1 - pasted area / image area).
  """
  ratio = tf.sqrt(1.0 - lam)
  sides = tf.constant([height, width], tf.float32)
  half = tf.cast(sides * ratio, tf.int32) // 2
  centre = tf.cast(draws.uniform([2]) * sides, tf.int32)
  limits = tf.constant([height, width], tf.int32)
  low = tf.clip_by_value(centre - half, 0, limits)
  high = tf.clip_by_value(centre + half, 0, limits)
  rows = tf.logical_and(tf.range(height) >= low[0], tf.range(height) < high[0])
  columns = tf.logical_and(tf.range(width) >= low[1],
                           tf.range(width) < high[1])
  mask = tf.logical_and(rows[:, tf.newaxis], columns[tf.newaxis, :])
  pasted = tf.cast(tf.reduce_prod(high - low), tf.float32)
  return mask, 1.0 - pasted / float(height * width)


def _blend(images, labels, lam):
  """MixUp of a batch with its reverse: `lam * x + (1 - lam) * x'`."""
  partner = lambda x: lam * x + (1.0 - lam) * tf.reverse(x, [0])
  return partner(images), partner(labels)


def _paste(images, labels, mask, lam):
  """CutMix: the reversed batch's pixels under `mask`, labels by `lam`."""
  pasted = tf.where(mask[tf.newaxis, :, :, tf.newaxis],
                    tf.reverse(images, [0]), images)
  return pasted, lam * labels + (1.0 - lam) * tf.reverse(labels, [0])


# Each one loop over the batch (TensorFlow's ops take three or four passes):
# in the pipeline at 224x224, 137 instead of 181 us of CPU per image for
# MixUp, 134 instead of 647 for CutMix (docs/input_pipeline.md).
_compiled_blend = tf.function(_blend, jit_compile=True)
_compiled_paste = tf.function(_paste, jit_compile=True)


class BatchMixer:
  """MixUp and/or CutMix of `(images, labels)` batches (see the module doc).

  Call it on one batch: `images, soft_labels = mixer(images, labels,
  seed=None)`.
  """

  def __init__(self, num_classes, mixup_alpha=0.0, cutmix_alpha=0.0):
    """Creates the mixer.

    Args:
      num_classes: Classes of the one-hot labels.
      mixup_alpha: Beta(alpha, alpha) of MixUp's weight; 0: no MixUp.
      cutmix_alpha: Beta(alpha, alpha) of CutMix's kept share; 0: no CutMix.

    Raises:
      ValueError: for a negative alpha, both alphas 0, or no classes.
    """
    self.mixup_alpha = check_alpha('mixup_alpha', mixup_alpha)
    self.cutmix_alpha = check_alpha('cutmix_alpha', cutmix_alpha)
    if not (self.mixup_alpha or self.cutmix_alpha):
      raise ValueError('BatchMixer needs mixup_alpha or cutmix_alpha > 0.')
    if not num_classes or num_classes < 1:
      raise ValueError(f'Mixing labels needs the class count, got '
                       f'num_classes={num_classes!r}')
    self.num_classes = int(num_classes)

  def _mixup_batch(self, images, labels, draws):
    return _compiled_blend(images, labels,
                           sample_lam(self.mixup_alpha, draws))

  def _cutmix_batch(self, images, labels, draws):
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
      raise ValueError(f'CutMix needs a static image size, got images of '
                       f'shape {images.shape}')
    mask, lam = cutmix_box(height, width,
                           sample_lam(self.cutmix_alpha, draws), draws)
    return _compiled_paste(images, labels, mask, lam)

  def __call__(self, images, labels, seed=None):
    """Mixes one batch.

    Args:
      images: float32 `[batch, height, width, channels]`.
      labels: int `[batch]` class ids.
      seed: An int `[2]` seed tensor of this batch's draws; None: TF's
        stateful random ops.

    Returns:
      `(images float32 [batch, height, width, channels], labels float32
      [batch, num_classes])`, each label row summing to 1.
    """
    draws = seeds.Draws(seed)
    onehot = tf.one_hot(labels, self.num_classes, dtype=tf.float32)
    mixup = lambda: self._mixup_batch(images, onehot,
                                      draws.child(_MIXUP_DRAWS))
    cutmix = lambda: self._cutmix_batch(images, onehot,
                                        draws.child(_CUTMIX_DRAWS))
    if not self.cutmix_alpha:
      return mixup()
    if not self.mixup_alpha:
      return cutmix()
    # timm's switch_prob=0.5.
    use_cutmix = draws.child(_CHOICE_DRAWS).uniform([]) < 0.5
    return tf.cond(use_cutmix, cutmix, mixup)
