"""VGG preprocessing (VGG and ResNet nets), as TF-Slim's.

Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition", 2014 (arXiv:1409.1556).

Training: resize the shorter side to a random size in [256, 512] keeping the
aspect ratio, take a random crop of the output size, random horizontal flip,
subtract the ImageNet RGB means. Evaluation: shorter side to 256, central
crop, subtract the means. Values stay on the 0-255 scale.
"""

import tensorflow as tf

from slimkit.preprocessing import image_ops

_R_MEAN = 123.68
_G_MEAN = 116.78
_B_MEAN = 103.94
# rgb_to_grayscale's weights: the mean of a grayscale image made from RGB.
_GRAY_MEAN = 0.2989 * _R_MEAN + 0.5870 * _G_MEAN + 0.1140 * _B_MEAN

_RESIZE_SIDE_MIN = 256
_RESIZE_SIDE_MAX = 512


def _mean_image_subtraction(image):
  # TF-Slim only had RGB means and failed on 1-channel images; a grayscale
  # image gets the mean of the grayscale of the RGB means.
  means = (_R_MEAN, _G_MEAN, _B_MEAN)
  if image_ops.num_channels(image) == 1:
    means = (_GRAY_MEAN,)
  return image - tf.constant(means, tf.float32)


def _smallest_size_at_least(height, width, smallest_side):
  """Returns (new_height, new_width) whose shorter side is `smallest_side`."""
  # Integer arithmetic: the shorter side comes out exactly `smallest_side`
  # (float scaling can land one pixel short).
  height = tf.cast(height, tf.int64)
  width = tf.cast(width, tf.int64)
  side = tf.cast(smallest_side, tf.int64)
  new_height = tf.where(height <= width, side, height * side // width)
  new_width = tf.where(height <= width, width * side // height, side)
  return tf.cast(new_height, tf.int32), tf.cast(new_width, tf.int32)


def aspect_preserving_resize(image, smallest_side):
  """Bilinearly resizes so that the shorter side is `smallest_side`.

  Returns:
    float32 image on the input's value scale.
  """
  shape = tf.shape(image)
  new_height, new_width = _smallest_size_at_least(shape[0], shape[1],
                                                  smallest_side)
  return tf.image.resize(image, tf.stack([new_height, new_width]),
                         method='bilinear')


def _central_crop(image, crop_height, crop_width):
  shape = tf.shape(image)
  top = (shape[0] - crop_height) // 2
  left = (shape[1] - crop_width) // 2
  return tf.image.crop_to_bounding_box(image, top, left, crop_height,
                                       crop_width)


def preprocess_for_train(image, output_height, output_width,
                         resize_side_min=_RESIZE_SIDE_MIN,
                         resize_side_max=_RESIZE_SIDE_MAX,
                         use_grayscale=False):
  """Random scale, crop and flip of one image; see the module doc."""
  channels = image_ops.num_channels(image)
  resize_side = tf.random.uniform([], minval=resize_side_min,
                                  maxval=resize_side_max + 1, dtype=tf.int32)
  image = aspect_preserving_resize(image, resize_side)
  image = tf.image.random_crop(image, [output_height, output_width, channels])
  image = image_ops.to_float(image)
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  image = tf.image.random_flip_left_right(image)
  return _mean_image_subtraction(image)


def preprocess_for_eval(image, output_height, output_width,
                        resize_side=_RESIZE_SIDE_MIN, use_grayscale=False):
  """Resize of the shorter side and central crop; see the module doc."""
  image = aspect_preserving_resize(image, resize_side)
  image = _central_crop(image, output_height, output_width)
  image = image_ops.to_float(image)
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  return _mean_image_subtraction(image)


def preprocess_image(image, output_height, output_width, is_training=False,
                     resize_side_min=_RESIZE_SIDE_MIN,
                     resize_side_max=_RESIZE_SIDE_MAX, use_grayscale=False):
  """Preprocesses one image for VGG or ResNet.

  Args:
    image: uint8 (or float in [0, 255]) `[height, width, channels]`.
    output_height: Height of the result.
    output_width: Width of the result.
    is_training: Augment (random scale, random crop, flip).
    resize_side_min: Training: lower bound of the random shorter side.
      Evaluation: the shorter side.
    resize_side_max: Training: upper bound (inclusive) of the random shorter
      side. Unused in evaluation.
    use_grayscale: Convert RGB to 1 channel.

  Returns:
    float32 `[output_height, output_width, channels]`, mean-subtracted on the
    0-255 scale.
  """
  if is_training:
    return preprocess_for_train(image, output_height, output_width,
                                resize_side_min=resize_side_min,
                                resize_side_max=resize_side_max,
                                use_grayscale=use_grayscale)
  return preprocess_for_eval(image, output_height, output_width,
                             resize_side=resize_side_min,
                             use_grayscale=use_grayscale)
