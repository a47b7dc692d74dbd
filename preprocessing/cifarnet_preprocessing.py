"""CifarNet preprocessing (CIFAR-10), as TF-Slim's.

Training: pad by 4 pixels, random crop back to the output size, random
horizontal flip, random brightness (max delta 63 on the 0-255 scale) and
contrast (factor in [0.2, 1.8]), then per-image standardization.
Evaluation: crop or pad to the output size, then per-image standardization.
"""

import tensorflow as tf

from slimkit.preprocessing import image_ops

_PADDING = 4
_BRIGHTNESS_MAX_DELTA = 63.0
_CONTRAST_RANGE = (0.2, 1.8)


def preprocess_for_train(image, output_height, output_width, padding=_PADDING,
                         use_grayscale=False):
  """Randomly pads, crops, flips and distorts one image; see the module doc."""
  image = image_ops.to_float(image)
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  channels = image_ops.num_channels(image)
  if padding > 0:
    image = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
  image = tf.image.random_crop(image, [output_height, output_width, channels])
  image = tf.image.random_flip_left_right(image)
  # TF-Slim's order.
  image = tf.image.random_brightness(image, max_delta=_BRIGHTNESS_MAX_DELTA)
  image = tf.image.random_contrast(image, *_CONTRAST_RANGE)
  return tf.image.per_image_standardization(image)


def preprocess_for_eval(image, output_height, output_width,
                        use_grayscale=False):
  """Crops or pads one image to the output size and standardizes it."""
  image = image_ops.to_float(image)
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  # TF-Slim passes (width, height) here; only square outputs worked there.
  image = image_ops.crop_or_pad(image, output_height, output_width)
  return tf.image.per_image_standardization(image)


def preprocess_image(image, output_height, output_width, is_training=False,
                     padding=_PADDING, use_grayscale=False):
  """Preprocesses one image for CifarNet.

  Args:
    image: uint8 (or float in [0, 255]) `[height, width, channels]`.
    output_height: Height of the result.
    output_width: Width of the result.
    is_training: Augment (pad, random crop, flip, brightness, contrast).
    padding: Pixels of zero padding on every side before the training crop.
    use_grayscale: Convert RGB to 1 channel.

  Returns:
    float32 `[output_height, output_width, channels]`, per-image standardized.
  """
  if is_training:
    return preprocess_for_train(image, output_height, output_width,
                                padding=padding, use_grayscale=use_grayscale)
  return preprocess_for_eval(image, output_height, output_width,
                             use_grayscale=use_grayscale)
