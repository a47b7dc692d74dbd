"""Inception preprocessing (Inception, Inception-ResNet and MobileNet nets).

As TF-Slim's. Training: a random crop sampled around the record's bounding
boxes (`tf.image.sample_distorted_bounding_box`, at least 10% of a box
covered, aspect ratio in [0.75, 1.33], 5-100% of the image; the whole image
when there are no boxes), bilinear resize to the output size, random
horizontal flip, random colour distortion (brightness and saturation; hue and
contrast too unless `fast_mode`), scale to [-1, 1]. Evaluation: central crop
keeping 0.875 of each side (`tf.image.central_crop`'s fraction), bilinear
resize, scale to [-1, 1]. Every resize is TF 1's, without half-pixel centres,
as TF-Slim's (`image_ops.resize_bilinear`), so evaluation gives TF-Slim's
pixels.

`preprocess_encoded` does the same from the encoded bytes: for a JPEG it
decodes only the crop window (`tf.io.decode_and_crop_jpeg`), which is what
lets the input pipeline decode and augment faster than it could decode whole
images.
"""

import tensorflow as tf

from slimkit import seeds
from slimkit.preprocessing import image_ops
from slimkit.preprocessing import randaugment as randaugment_lib

_BRIGHTNESS_MAX_DELTA = 32.0 / 255.0
_SATURATION_RANGE = (0.5, 1.5)
_HUE_MAX_DELTA = 0.2
_CONTRAST_RANGE = (0.5, 1.5)

_MIN_OBJECT_COVERED = 0.1
_ASPECT_RATIO_RANGE = (0.75, 1.33)
_AREA_RANGE = (0.05, 1.0)
_MAX_ATTEMPTS = 100

_CENTRAL_FRACTION = 0.875
# fast_mode resizes bilinearly only; otherwise one of these at random.
_RESIZE_METHODS = ('bilinear', 'nearest', 'bicubic', 'area')

# Keys of the seeded draws of the crop window, of the rest and of
# RandAugment: the window is drawn in both branches of the JPEG/other decode,
# which must draw alike.
_WINDOW_DRAWS, _FINISH_DRAWS, _RANDAUGMENT_DRAWS = 1, 2, 3


def adjust_saturation(image, factor):
  """`tf.image.adjust_saturation` of an RGB image, about 4x faster on CPU.

  Scaling HSV saturation by `factor` (clipped at full saturation) at fixed
  hue and value moves each channel c to `v + k * (c - v)`, where v is the
  pixel's max channel and `k = min(factor, v / (v - min channel))`. Computed
  on channel planes, this avoids the per-pixel HSV round trip of TensorFlow's
  kernel, which costs about as much as decoding the image.

  Args:
    image: float32 `[height, width, 3]`.
    factor: Scalar saturation multiplier.

  Returns:
    The adjusted image (equal to TensorFlow's up to float rounding).
  """
  planes = tf.transpose(image, [2, 0, 1])
  value = tf.reduce_max(planes, axis=0)
  chroma = value - tf.reduce_min(planes, axis=0)
  # A grey pixel (no chroma) is unchanged whatever k is.
  k = tf.clip_by_value(value / tf.maximum(chroma, 1e-12), 0.0,
                       tf.cast(factor, tf.float32))
  return tf.transpose(value + k * (planes - value), [1, 2, 0])


def random_saturation(image, lower, upper, draws=None):
  """`adjust_saturation` by a factor drawn uniformly from [lower, upper)."""
  draws = draws or seeds.Draws()
  return adjust_saturation(image, draws.uniform([], lower, upper))


def distort_color(image, color_ordering=0, fast_mode=True, draws=None):
  """Distorts the colours of one image in [0, 1].

  Training uses `distort_and_scale` instead in fast mode on RGB images (the
  same result, faster). Each op is TF's `random_*` op written as its
  `adjust_*` op of a uniform draw (which is how TF defines them), so that
  the draws can be stateless.

  Args:
    image: float32 `[height, width, channels]` in [0, 1].
    color_ordering: Which order of the colour ops (0-3; 0-1 in fast mode).
    fast_mode: Only brightness and saturation (no hue, no contrast).
    draws: The `seeds.Draws` of this image; None: TF's stateful draws.

  Returns:
    The distorted image, clipped to [0, 1].

  Raises:
    ValueError: for an ordering outside the valid range.
  """
  draws = draws or seeds.Draws()
  rgb = image_ops.num_channels(image) == 3
  brightness = lambda x: tf.image.adjust_brightness(
      x, draws.uniform([], -_BRIGHTNESS_MAX_DELTA, _BRIGHTNESS_MAX_DELTA))
  # Saturation and hue are undefined for 1 channel (TF-Slim failed there);
  # such images get brightness and contrast only.
  saturation = ((lambda x: random_saturation(x, *_SATURATION_RANGE, draws))
                if rgb else (lambda x: x))
  hue = ((lambda x: tf.image.adjust_hue(
      x, draws.uniform([], -_HUE_MAX_DELTA, _HUE_MAX_DELTA)))
         if rgb else (lambda x: x))
  contrast = lambda x: tf.image.adjust_contrast(
      x, draws.uniform([], *_CONTRAST_RANGE))
  if fast_mode:
    orders = ((brightness, saturation), (saturation, brightness))
  else:
    orders = ((brightness, saturation, hue, contrast),
              (saturation, brightness, contrast, hue),
              (contrast, hue, brightness, saturation),
              (hue, saturation, contrast, brightness))
  if not 0 <= color_ordering < len(orders):
    raise ValueError(f'color_ordering must be in [0, {len(orders) - 1}] '
                     f'(fast_mode={fast_mode}), got {color_ordering!r}')
  for op in orders[color_ordering]:
    image = op(image)
  # The random_* ops do not clip.
  return tf.clip_by_value(image, 0.0, 1.0)


def _random_choice(num_cases, branch_fn, draws):
  """Runs `branch_fn(case)` for a case drawn uniformly at run time."""
  if num_cases == 1:
    return branch_fn(0)
  selector = draws.uniform([], maxval=num_cases, dtype=tf.int32)
  return tf.switch_case(selector,
                        [lambda c=c: branch_fn(c) for c in range(num_cases)])


def _bbox_tensor(bbox):
  """[N, 4] or [1, N, 4] boxes (or None) as the [1, N, 4] of the box ops."""
  if bbox is None:
    return tf.zeros([1, 0, 4], tf.float32)
  bbox = tf.clip_by_value(tf.cast(bbox, tf.float32), 0.0, 1.0)
  return tf.reshape(bbox, [1, -1, 4])


def _distorted_window(image_shape, bbox, draws):
  """Samples TF-Slim's distorted crop; returns (offsets [2], sizes [2])."""
  options = dict(bounding_boxes=_bbox_tensor(bbox),
                 min_object_covered=_MIN_OBJECT_COVERED,
                 aspect_ratio_range=_ASPECT_RATIO_RANGE,
                 area_range=_AREA_RANGE, max_attempts=_MAX_ATTEMPTS,
                 use_image_if_no_bounding_boxes=True)
  seed = draws.next_seed()
  if seed is None:
    begin, size, _ = tf.image.sample_distorted_bounding_box(image_shape,
                                                            **options)
  else:
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_shape, seed=seed, **options)
  return begin[:2], size[:2]


def _central_window(image_shape, central_fraction):
  """The window of `tf.image.central_crop`; returns (offsets, sizes)."""
  hw = tf.cast(image_shape[:2], tf.int32)
  hw_float = tf.cast(hw, tf.float64)
  start = tf.cast((hw_float - hw_float * central_fraction) / 2, tf.int32)
  return start, hw - 2 * start


def _whole_window(image_shape):
  hw = tf.cast(image_shape[:2], tf.int32)
  return tf.zeros([2], tf.int32), hw


def _resize(image, height, width, fast_mode, draws):
  """Resizes to [height, width]; the result is float32 on the input's scale.

  TF 1's resize, as TF-Slim's `tf.image.resize_images` (no half-pixel
  centres; see `image_ops.resize_bilinear`).
  """
  if fast_mode:
    return image_ops.resize_bilinear(image, height, width)
  # Cast first: the same pixels, and nearest-neighbour returns float32 too.
  image = image_ops.to_float(image)
  return _random_choice(
      len(_RESIZE_METHODS),
      lambda m: tf.compat.v1.image.resize_images(
          image, [height, width], method=_RESIZE_METHODS[m]), draws)


def distort_and_scale(image, delta, factor, brightness_first, max_value,
                      flip=False):
  """Fast mode's colour distortion and the scaling to [-1, 1], fused.

  Equal (up to float rounding) to `adjust_brightness(delta)` and
  `adjust_saturation(factor)` in either order, clipping to [0, max_value],
  then scaling to [-1, 1]. Brightness before saturation only changes the
  saturation limit (v + delta instead of v); either way a channel c becomes
  `v + delta - k * (v - c)`, with v the pixel's max channel and k as in
  `adjust_saturation`. Written as `min(limit * (v - c) / chroma,
  factor * (v - c))` (v - c >= 0, so the min moves inside), every term is
  per element: XLA then fuses the whole function into one loop instead of
  two (a per-pixel k shared by three channels is kept apart because of its
  division), and each loop it runs costs a hand-off to a second thread.

  Args:
    image: float32 `[height, width, 3]` in [0, max_value].
    delta: Brightness delta, on the [0, max_value] scale.
    factor: Saturation factor.
    brightness_first: Scalar bool: the colour ordering.
    max_value: Full intensity of `image` (1.0 or 255.0).
    flip: Scalar bool: also flip left-right (free when compiled: the flip is
      an index change inside the fused loop, not a pass of its own).

  Returns:
    float32 `[height, width, 3]` in [-1, 1].
  """
  # Channel slices keep the HWC layout: no transposes in or out.
  red, green, blue = image[..., 0:1], image[..., 1:2], image[..., 2:3]
  value = tf.maximum(tf.maximum(red, green), blue)
  # A grey pixel (no chroma) has v - c = 0 in every channel: unchanged.
  chroma = tf.maximum(value - tf.minimum(tf.minimum(red, green), blue),
                      1e-12)
  limit = value + tf.where(brightness_first, delta, 0.0)
  below = value - image
  # A negative limit (all channels below 0) still ends at 0 after the clip.
  drop = tf.minimum(limit * (below / chroma), factor * below)
  image = (value + delta - drop) * (2.0 / max_value) - 1.0
  # One ClipByValue kernel (tf.clip_by_value runs two ops).
  image = tf.raw_ops.ClipByValue(t=image, clip_value_min=-1.0,
                                 clip_value_max=1.0)
  if flip is not False:  # a tensor (or True)
    image = tf.where(flip, tf.reverse(image, [1]), image)
  return image


# The same function compiled by XLA, which fuses its elementwise passes over
# the image: inside tf.data on a 2-core CPU, 3.3x faster than TensorFlow's
# ops already as two loops (15,200 vs 4,500 224x224 images/s); one loop costs
# a quarter to a third less again (docs/input_pipeline.md). Compiled once per
# image size; tf.data runs it on the host CPU whatever the accelerator.
compiled_distort_and_scale = tf.function(distort_and_scale, jit_compile=True)


def _finish_train(cropped, height, width, fast_mode, use_grayscale, draws,
                  augment=None):
  image = _resize(cropped, height, width, fast_mode, draws)
  # Resizing uint8 yields floats in [0, 255]; they are distorted on that
  # scale, sparing a pass over the image.
  max_value = 255.0 if cropped.dtype == tf.uint8 else 1.0
  if augment is not None:
    image = augment(image, max_value)
  if fast_mode and image_ops.num_channels(image) == 3:
    image = compiled_distort_and_scale(
        image,
        delta=draws.uniform([], -_BRIGHTNESS_MAX_DELTA,
                            _BRIGHTNESS_MAX_DELTA) * max_value,
        factor=draws.uniform([], *_SATURATION_RANGE),
        brightness_first=draws.uniform([], maxval=2, dtype=tf.int32) == 0,
        max_value=max_value, flip=draws.uniform([]) < 0.5)
  else:
    # tf.image.random_flip_left_right, with a draw that can be stateless.
    image = tf.cond(draws.uniform([]) < 0.5, lambda: tf.reverse(image, [1]),
                    lambda: image)
    image = image / max_value
    num_orderings = 2 if fast_mode else 4
    image = _random_choice(num_orderings,
                           lambda o: distort_color(image, o, fast_mode, draws),
                           draws)
    image = image * 2.0 - 1.0
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  return image


def _finish_eval(cropped, height, width, use_grayscale):
  source_dtype = cropped.dtype
  if height and width:
    image = image_ops.resize_bilinear(cropped, height, width)
  else:
    image = tf.cast(cropped, tf.float32)
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  # One multiply-add to [-1, 1] instead of TF-Slim's three passes.
  scale = 2.0 / 255.0 if source_dtype == tf.uint8 else 2.0
  return image * scale - 1.0


def _normalise_dtype(image):
  # uint8 is kept (cropping and resizing it is cheaper); other integer types
  # go to [0, 1] floats as tf.image.convert_image_dtype defines them.
  if image.dtype in (tf.uint8, tf.float32):
    return image
  return image_ops.to_unit_float(image)


def _window(image_shape, is_training, bbox, crop_image, central_fraction,
            draws):
  if not crop_image:
    return _whole_window(image_shape)
  if is_training:
    return _distorted_window(image_shape, bbox, draws)
  if central_fraction:
    return _central_window(image_shape, central_fraction)
  return _whole_window(image_shape)


def _randaugment_fn(randaugment, is_training, draws):
  """`fn(image, max_value)` applying RandAugment in training, or None."""
  if not (randaugment and is_training):
    return None
  augment_draws = draws.child(_RANDAUGMENT_DRAWS)
  return lambda image, max_value: randaugment_lib.distort(
      image, *randaugment, draws=augment_draws, max_value=max_value)


def _finish(cropped, height, width, is_training, fast_mode, use_grayscale,
            draws, augment=None):
  if is_training:
    return _finish_train(cropped, height, width, fast_mode, use_grayscale,
                         draws, augment)
  return _finish_eval(cropped, height, width, use_grayscale)


def preprocess_image(image, height, width, is_training=False, bbox=None,
                     fast_mode=True, crop_image=True,
                     central_fraction=_CENTRAL_FRACTION, use_grayscale=False,
                     seed=None, randaugment=None):
  """Preprocesses one decoded image for an Inception-style net.

  Args:
    image: `[height, width, channels]` uint8, or float in [0, 1].
    height: Output height (evaluation: 0 or None keeps the cropped size).
    width: Output width.
    is_training: Augment (distorted crop, flip, colour distortion).
    bbox: float `[num_boxes, 4]` (or `[1, num_boxes, 4]`) boxes as normalised
      `[ymin, xmin, ymax, xmax]`; None or no boxes means the whole image.
      Used in training only.
    fast_mode: Bilinear resizing only, no hue or contrast distortion.
    crop_image: Training: sample the distorted crop. Evaluation: take the
      central crop. False keeps the whole image in both.
    central_fraction: Evaluation: fraction of each side kept by the central
      crop.
    use_grayscale: Convert RGB to 1 channel (after the colour distortion).
    seed: Training: an int `[2]` seed tensor making every random draw
      stateless (the same output for the same seed); None uses TF's
      stateful random ops.
    randaugment: Training: `(N, M)` of RandAugment (`randaugment.py`),
      applied to the resized image before the flip and colour distortion;
      None: none (TF-Slim's augmentation).

  Returns:
    float32 `[height, width, channels]` in [-1, 1].
  """
  draws = seeds.Draws(seed)
  image = _normalise_dtype(image)
  channels = image_ops.num_channels(image)
  offsets, sizes = _window(tf.shape(image), is_training, bbox, crop_image,
                           central_fraction, draws.child(_WINDOW_DRAWS))
  cropped = image_ops.window_of(image)(offsets, sizes)
  cropped.set_shape([None, None, channels])
  return _finish(cropped, height, width, is_training, fast_mode,
                 use_grayscale, draws.child(_FINISH_DRAWS),
                 _randaugment_fn(randaugment, is_training, draws))


def preprocess_encoded(encoded, height, width, is_training=False, channels=3,
                       bbox=None, fast_mode=True, crop_image=True,
                       central_fraction=_CENTRAL_FRACTION,
                       use_grayscale=False, seed=None, randaugment=None):
  """Like `preprocess_image`, from the encoded PNG or JPEG bytes.

  A JPEG is decoded only inside the crop window; the result equals decoding
  the whole image and calling `preprocess_image` (up to the random draws).

  Args:
    encoded: Scalar string tensor: the image file's bytes.
    height: Output height.
    width: Output width.
    is_training: Augment, as `preprocess_image`.
    channels: Channels to decode (1 or 3).
    bbox: As `preprocess_image`.
    fast_mode: As `preprocess_image`.
    crop_image: As `preprocess_image`.
    central_fraction: As `preprocess_image`.
    use_grayscale: As `preprocess_image`.
    seed: As `preprocess_image`.
    randaugment: As `preprocess_image`.

  Returns:
    float32 `[height, width, channels]` in [-1, 1] (1 channel with
    `use_grayscale`).
  """
  draws = seeds.Draws(seed)
  cropped = image_ops.crop_from_encoded(
      encoded, channels,
      lambda shape, decode_window: decode_window(*_window(
          shape, is_training, bbox, crop_image, central_fraction,
          draws.child(_WINDOW_DRAWS))))
  cropped.set_shape([None, None, channels])
  return _finish(cropped, height, width, is_training, fast_mode,
                 use_grayscale, draws.child(_FINISH_DRAWS),
                 _randaugment_fn(randaugment, is_training, draws))
