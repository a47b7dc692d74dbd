"""VGG preprocessing (VGG and ResNet nets), as TF-Slim's.

Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition", 2014 (arXiv:1409.1556).

Training: resize the shorter side to a random size in [256, 512] keeping the
aspect ratio, take a random crop of the output size, random horizontal flip,
subtract the ImageNet RGB means. Evaluation: shorter side to 256, central
crop, subtract the means. Values stay on the 0-255 scale.

Resizing is TF-Slim's: the new size is rounded as its `_smallest_size_at_least`
rounds it, and the bilinear resize is TF 1's, without half-pixel centres
(`image_ops.resize_bilinear`), so evaluation gives TF-Slim's pixels exactly.
Training interpolates only the crop's pixels from the source pixels under it
(and `preprocess_encoded` decodes a JPEG only there), which equals resizing
the whole image and cropping up to float rounding; evaluation resizes the
whole image as TF-Slim did.
"""

import tensorflow as tf

from slimkit import seeds
from slimkit.preprocessing import image_ops
from slimkit.preprocessing import randaugment as randaugment_lib

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
  """Returns (new_height, new_width) whose shorter side is `smallest_side`.

  TF-Slim's arithmetic, in float32: `scale = smallest_side / min(height,
  width)`, each side `rint(side * scale)`. The longer side therefore rounds
  to nearest (a 300x451 image at 256 becomes 256x385, not 256x384), and the
  shorter side comes out exactly `smallest_side`.
  """
  height = tf.cast(height, tf.float32)
  width = tf.cast(width, tf.float32)
  side = tf.cast(smallest_side, tf.float32)
  scale = side / tf.minimum(height, width)
  new_height = tf.cast(tf.math.rint(height * scale), tf.int32)
  new_width = tf.cast(tf.math.rint(width * scale), tf.int32)
  return new_height, new_width


def aspect_preserving_resize(image, smallest_side):
  """Bilinearly resizes so that the shorter side is `smallest_side`.

  Returns:
    float32 image on the input's value scale.
  """
  shape = tf.shape(image)
  new_height, new_width = _smallest_size_at_least(shape[0], shape[1],
                                                  smallest_side)
  return image_ops.resize_bilinear(image, new_height, new_width)


def _central_crop(image, crop_height, crop_width):
  shape = tf.shape(image)
  top = (shape[0] - crop_height) // 2
  left = (shape[1] - crop_width) // 2
  return tf.image.crop_to_bounding_box(image, top, left, crop_height,
                                       crop_width)


def _sample_span(in_size, out_size, start, length):
  """The first and last positions `image_ops.resize_bilinear` samples for
  outputs `start` to `start + length - 1` (TF 1's: output `i` at `i * scale`).

  Returns:
    float32 `[2]`: source positions (TensorFlow's CPU kernel arithmetic).
  """
  scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
  ends = tf.cast(tf.stack([start, start + length - 1]), tf.float32)
  return ends * scale


def _random_resized_crop(image_shape, decode_window, resize_side,
                         output_height, output_width, draws):
  """Random crop and flip of the image resized to shorter side `resize_side`.

  Equal (up to float rounding) to `aspect_preserving_resize`, a random crop
  of the output size and a random horizontal flip, but it reads only the
  pixels under the crop and interpolates only the output's: a JPEG is
  decoded only there and no resized image is made (at a shorter side of
  512, resizing the whole image was most of VGG training's input cost).

  Args:
    image_shape: int32 `[3]`: the source image's shape.
    decode_window: `fn(offsets [2], sizes [2])` -> the source pixels in
      that window, `[height, width, channels]`.
    resize_side: Scalar int32: the shorter side after resizing.
    output_height: Height of the crop.
    output_width: Width of the crop.
    draws: The `seeds.Draws` of the crop and flip.

  Returns:
    float32 `[output_height, output_width, channels]` on the source scale.
  """
  height, width = image_shape[0], image_shape[1]
  new_height, new_width = _smallest_size_at_least(height, width, resize_side)
  fits = tf.debugging.assert_greater_equal(
      tf.stack([new_height, new_width]), [output_height, output_width],
      message=f'VGG preprocessing: the image resized to its shorter side '
      f'(x: height, width) is smaller than the {output_height}x'
      f'{output_width} output (y)')
  with tf.control_dependencies([fits]):  # before the draws that would fail
    top = draws.uniform([], maxval=new_height - output_height + 1,
                        dtype=tf.int32)
    left = draws.uniform([], maxval=new_width - output_width + 1,
                         dtype=tf.int32)
  rows = _sample_span(height, new_height, top, output_height)
  columns = _sample_span(width, new_width, left, output_width)
  spans = tf.stack([rows, columns])  # [[y first, y last], [x first, x last]]
  # The source pixels those positions interpolate between.
  begin = tf.cast(tf.floor(spans[:, 0]), tf.int32)
  end = tf.minimum(tf.cast(tf.math.ceil(spans[:, 1]), tf.int32),
                   tf.stack([height, width]) - 1)
  window = decode_window(begin, end - begin + 1)
  # Resizing clamps positions past the last pixel (upsampling, at the bottom
  # and right edges) to the edge pixels, where crop_and_resize would give
  # zeros: one replicated pixel below and to the right makes it clamp too.
  # (TF 1's positions `i * scale` are never below 0.) It is rare, and the
  # padding costs more than the interpolation, so only then.
  outside = tf.reduce_any(
      spans[:, 1] > tf.cast(tf.stack([height, width]) - 1, tf.float32))
  window = tf.cond(
      outside,
      lambda: tf.pad(window, [[0, 1], [0, 1], [0, 0]], mode='SYMMETRIC'),
      lambda: window)
  last = tf.cast(tf.shape(window)[:2] - 1, tf.float32)
  box = (spans - tf.cast(begin, tf.float32)[:, tf.newaxis]) / last[
      :, tf.newaxis]
  flip = draws.uniform([]) < 0.5
  box = tf.stack([box[0], tf.where(flip, tf.reverse(box[1], [0]), box[1])])
  return tf.image.crop_and_resize(
      window[tf.newaxis], tf.reshape(tf.transpose(box), [1, 4]), [0],
      [output_height, output_width])[0]


def _finish(image, use_grayscale, randaugment=None, draws=None):
  if randaugment:  # on the crop, before the mean subtraction
    image = randaugment_lib.distort(image, *randaugment,
                                    draws=draws.child(_RANDAUGMENT_DRAWS))
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  return _mean_image_subtraction(image)


def _eval_crop(image, output_height, output_width, resize_side):
  # As TF-Slim: the whole image resized, then its centre, so that evaluation
  # sees exactly TF-Slim's pixels.
  image = aspect_preserving_resize(image, resize_side)
  return _central_crop(image, output_height, output_width)


def _resize_side(resize_side_min, resize_side_max, draws):
  return draws.uniform([], minval=resize_side_min, maxval=resize_side_max + 1,
                       dtype=tf.int32)


# Keys of the seeded draws of the shorter side, of the crop and of
# RandAugment: the crop is drawn in both branches of the JPEG/other decode,
# which must draw alike.
_SIDE_DRAWS, _CROP_DRAWS, _RANDAUGMENT_DRAWS = 1, 2, 3


def preprocess_for_train(image, output_height, output_width,
                         resize_side_min=_RESIZE_SIDE_MIN,
                         resize_side_max=_RESIZE_SIDE_MAX,
                         use_grayscale=False):
  """Random scale, crop and flip of one image; see the module doc."""
  return preprocess_image(image, output_height, output_width, True,
                          resize_side_min, resize_side_max, use_grayscale)


def preprocess_for_eval(image, output_height, output_width,
                        resize_side=_RESIZE_SIDE_MIN, use_grayscale=False):
  """Resize of the shorter side and central crop; see the module doc."""
  return preprocess_image(image, output_height, output_width, False,
                          resize_side, use_grayscale=use_grayscale)


def preprocess_image(image, output_height, output_width, is_training=False,
                     resize_side_min=_RESIZE_SIDE_MIN,
                     resize_side_max=_RESIZE_SIDE_MAX, use_grayscale=False,
                     seed=None, randaugment=None):
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
    seed: Training: an int `[2]` seed tensor making the random draws
      stateless (the same output for the same seed); None uses TF's
      stateful random ops.
    randaugment: Training: `(N, M)` of RandAugment (`randaugment.py`),
      applied to the flipped crop before the mean subtraction; None: none
      (TF-Slim's augmentation).

  Returns:
    float32 `[output_height, output_width, channels]`, mean-subtracted on the
    0-255 scale.
  """
  if not is_training:
    return _finish(_eval_crop(image, output_height, output_width,
                              resize_side_min), use_grayscale)
  draws = seeds.Draws(seed)
  cropped = _random_resized_crop(
      tf.shape(image), image_ops.window_of(image),
      _resize_side(resize_side_min, resize_side_max,
                   draws.child(_SIDE_DRAWS)), output_height, output_width,
      draws.child(_CROP_DRAWS))
  cropped.set_shape([output_height, output_width,
                     image_ops.num_channels(image)])
  return _finish(cropped, use_grayscale, randaugment, draws)


def preprocess_encoded(encoded, output_height, output_width,
                       is_training=False, channels=3,
                       resize_side_min=_RESIZE_SIDE_MIN,
                       resize_side_max=_RESIZE_SIDE_MAX, use_grayscale=False,
                       seed=None, randaugment=None):
  """Like `preprocess_image`, from the encoded PNG or JPEG bytes.

  A JPEG is decoded only under the crop (`tf.io.decode_and_crop_jpeg`); the
  result equals decoding the whole image and calling `preprocess_image`
  (up to the random draws).

  Args:
    encoded: Scalar string tensor: the image file's bytes.
    output_height: Height of the result.
    output_width: Width of the result.
    is_training: Augment, as `preprocess_image`.
    channels: Channels to decode (1 or 3).
    resize_side_min: As `preprocess_image`.
    resize_side_max: As `preprocess_image`.
    use_grayscale: As `preprocess_image`.
    seed: As `preprocess_image`.
    randaugment: As `preprocess_image`.

  Returns:
    float32 `[output_height, output_width, channels]` (1 channel with
    `use_grayscale`), mean-subtracted on the 0-255 scale.
  """
  if not is_training:
    image = tf.io.decode_image(encoded, channels=channels,
                               expand_animations=False)
    return preprocess_image(image, output_height, output_width, False,
                            resize_side_min, use_grayscale=use_grayscale)
  draws = seeds.Draws(seed)
  resize_side = _resize_side(resize_side_min, resize_side_max,
                             draws.child(_SIDE_DRAWS))
  cropped = image_ops.crop_from_encoded(
      encoded, channels,
      lambda shape, decode_window: _random_resized_crop(
          shape, decode_window, resize_side, output_height, output_width,
          draws.child(_CROP_DRAWS)))
  cropped.set_shape([output_height, output_width, channels])
  return _finish(cropped, use_grayscale, randaugment, draws)
