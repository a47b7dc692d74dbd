"""CifarNet preprocessing (CIFAR-10), as TF-Slim's.

Training: pad by 4 pixels, random crop back to the output size, random
horizontal flip, random brightness (max delta 63 on the 0-255 scale; it
cancels out, see `preprocess_for_train`) and contrast (factor in
[0.2, 1.8]), then per-image standardization.
Evaluation: crop or pad to the output size, then per-image standardization.
"""

import tensorflow as tf

from slimkit import seeds
from slimkit.preprocessing import image_ops
from slimkit.preprocessing import randaugment as randaugment_lib

_PADDING = 4
# TF-Slim's; see preprocess_for_train for why it is not applied.
_BRIGHTNESS_MAX_DELTA = 63.0
_CONTRAST_RANGE = (0.2, 1.8)
# The key of RandAugment's draws (`Draws.child`).
_RANDAUGMENT_DRAWS = 1


def _distorted(image, draws, output_height, output_width, padding,
               augment=None):
  """TF-Slim's training distortions of a float image, given uniform draws,
  and the per-image standardization.

  Args:
    image: float32 `[height, width, channels]`.
    draws: float32 `[4]` uniform in [0, 1): crop row and column, flip,
      contrast factor.
    output_height: Height of the crop.
    output_width: Width of the crop.
    padding: Zero padding on every side before the crop.
    augment: Optional `fn(image) -> image` applied after the flip, before
      the contrast change (RandAugment needs the [0, 255] image, which the
      contrast change leaves).

  Returns:
    float32 `[output_height, output_width, channels]`, standardized.
  """
  channels = image_ops.num_channels(image)
  if padding > 0:
    image = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
  # No assertion (at 32x32 it would cost an eighth of the preprocessing): a
  # padded image smaller than the output fails in the slice, which names
  # both sizes.
  room = tf.maximum(tf.shape(image)[:2] - [output_height, output_width] + 1,
                    1)
  offsets = tf.cast(draws[:2] * tf.cast(room, tf.float32), tf.int32)
  image = tf.slice(image, tf.concat([offsets, [0]], 0),
                   [output_height, output_width, channels])
  image = tf.cond(draws[2] < 0.5, lambda: tf.reverse(image, [1]),
                  lambda: image)
  if augment is not None:
    image = augment(image)
  low, high = _CONTRAST_RANGE
  image = tf.image.adjust_contrast(image, low + (high - low) * draws[3])
  return image_ops.standardize(image)


def preprocess_for_train(image, output_height, output_width, padding=_PADDING,
                         use_grayscale=False, seed=None, randaugment=None):
  """Randomly pads, crops, flips and distorts one image; see the module doc.

  TF-Slim's random brightness is not computed: it adds one constant to
  every pixel before the contrast change (which keeps it) and the per-image
  standardization (which subtracts it), so the output does not depend on
  it. One draw of 4 uniforms replaces the ops' separate draws: at 32x32 the
  number of ops, not the pixels, is the cost. `randaugment=(N, M)` applies
  RandAugment after the flip.
  """
  image = image_ops.to_float(image)
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  draws = seeds.Draws(seed)
  augment = None
  if randaugment:
    augment_draws = draws.child(_RANDAUGMENT_DRAWS)
    augment = lambda x: randaugment_lib.distort(x, *randaugment,
                                                draws=augment_draws)
  return _distorted(image, draws.uniform([4]), output_height, output_width,
                    padding, augment)


def preprocess_for_eval(image, output_height, output_width,
                        use_grayscale=False):
  """Crops or pads one image to the output size and standardizes it."""
  image = image_ops.to_float(image)
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  # TF-Slim passes (width, height) here; only square outputs worked there.
  image = image_ops.crop_or_pad(image, output_height, output_width)
  return image_ops.standardize(image)


def preprocess_image(image, output_height, output_width, is_training=False,
                     padding=_PADDING, use_grayscale=False, seed=None,
                     randaugment=None):
  """Preprocesses one image for CifarNet.

  Args:
    image: uint8 (or float in [0, 255]) `[height, width, channels]`.
    output_height: Height of the result.
    output_width: Width of the result.
    is_training: Augment (pad, random crop, flip, brightness, contrast).
    padding: Pixels of zero padding on every side before the training crop.
    use_grayscale: Convert RGB to 1 channel.
    seed: Training: an int `[2]` seed tensor making the random draws
      stateless (the same output for the same seed); None uses TF's
      stateful random ops.
    randaugment: Training: `(N, M)` of RandAugment (`randaugment.py`),
      applied after the crop and flip, before the contrast change and the
      standardization; None: none (TF-Slim's augmentation).

  Returns:
    float32 `[output_height, output_width, channels]`, per-image standardized.
  """
  if is_training:
    return preprocess_for_train(image, output_height, output_width,
                                padding=padding, use_grayscale=use_grayscale,
                                seed=seed, randaugment=randaugment)
  return preprocess_for_eval(image, output_height, output_width,
                             use_grayscale=use_grayscale)
