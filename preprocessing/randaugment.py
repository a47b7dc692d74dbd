"""RandAugment of one image, on TensorFlow ops (training only).

Cubuk et al., "RandAugment: Practical automated data augmentation with a
reduced search space", 2019 (arXiv:1909.13719). Each image gets N ops in a
row, each drawn uniformly (with replacement) from the paper's 14, all at one
magnitude M. The styles apply it in training, per image, on the [0, 255]
image after their crop (and flip) and before their colour distortion and
normalisation (`preprocessing_factory.get_preprocessing(...,
randaugment=(N, M))`, `--randaugment=N,M`).

M is on the paper's scale, 0 to 10, where 10 is the strongest magnitude
AutoAugment searched over; each op's strength is linear in M / 10, as in
TF Model Garden and timm. The paper's own runs went past 10 (its ImageNet
ResNet-50 used N=2, M=9; its EfficientNet-B7 M=28, on the same scale
extrapolated to 30), but past 10 several ops leave the range they are
defined on (fewer than 4 bits, negative enhancement factors, shifts beyond
the image), so M is limited to [0, 10] (timm clips at 10 too). Every op gets
stronger with M (timm's "increasing" variants; TF Model Garden's solarize
and posterize, from AutoAugment's code, get weaker). `±`: the sign is drawn
per op.

| op | at magnitude M |
|---|---|
| Identity | the image |
| AutoContrast | each channel stretched to [0, 255] |
| Equalize | each channel's histogram equalised (PIL's `ImageOps.equalize`) |
| Rotate | ±30 * M/10 degrees about the centre |
| Solarize | pixels >= 256 * (1 - M/10) inverted (255 - x) |
| Color | saturation factor 1 ± 0.9 * M/10 (a blend with the grey image) |
| Posterize | 8 - int(4 * M/10) bits kept (8 to 4, AutoAugment's range) |
| Contrast | factor 1 ± 0.9 * M/10 (a blend with the mean grey) |
| Brightness | factor 1 ± 0.9 * M/10 (a blend with black) |
| Sharpness | factor 1 ± 0.9 * M/10 (a blend with PIL's smoothed image) |
| ShearX, ShearY | shear ±0.3 * M/10 |
| TranslateX, TranslateY | shift ±0.45 * M/10 of the width or height |

The enhancement factors span TF Model Garden's [0.1, 1.9]; 0.45 of the side
is timm's translation and TF Model Garden's 100 pixels at 224. Geometric ops
sample the nearest pixel, as TF Model Garden (timm interpolates, at four
gathers per pixel instead of one), and fill with grey 128, as both do. The
output stays in [0, 255]. Only the drawn op of each layer runs
(`tf.switch_case`); most ops are compiled by XLA.

Keras's `keras.layers.RandAugment` is not used: it ignores a seed passed to
it (its draws come from its own `SeedGenerator`, a variable: not replayable
and not deterministic in a parallel `tf.data` map), picks the same ops for
a whole batch, and computes all 11 of its ops on every call, selecting the
chosen ones with `where`. Here the draws are the image's own
(`seeds.Draws`).

  image = randaugment.distort(image, num_layers=2, magnitude=9,
                              draws=seeds.Draws(seed))
"""

import math

import tensorflow as tf

from slimkit import seeds
from slimkit.preprocessing import image_ops
# The flags check --randaugment before TensorFlow is imported: the parsing
# lives in a TensorFlow-free module.
from slimkit.preprocessing.randaugment_args import (  # noqa: F401
    MAX_MAGNITUDE, check, parse)
_FILL = 128.0


def _blend(degenerate, image, factor):
  """PIL's `ImageEnhance` blend, clipped to [0, 255]."""
  return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0,
                          255.0)


def _grey(image):
  if image_ops.num_channels(image) == 1:
    return image
  return tf.image.rgb_to_grayscale(image)


def _enhance_factor(level, sign):
  return 1.0 + sign * 0.9 * level


def _identity(image, level, sign):
  del level, sign
  return image


def _auto_contrast(image, level, sign):
  del level, sign
  low = tf.reduce_min(image, axis=[0, 1])
  high = tf.reduce_max(image, axis=[0, 1])
  scale = 255.0 / tf.maximum(high - low, 1e-6)
  # A constant channel stays as it is.
  return tf.where(high > low, (image - low) * scale, image)


def _equalize(image, level, sign):
  """PIL's `ImageOps.equalize`, per channel, on the rounded pixel values."""
  del level, sign
  channels = image_ops.num_channels(image)
  values = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.int32)
  # TensorFlow's bincount, not XLA's scatter (2.5x slower for this).
  histogram = tf.math.bincount(
      tf.transpose(tf.reshape(values, [-1, channels])), minlength=256,
      maxlength=256, axis=-1)
  # PIL spreads all but the last occupied level's count over 255 steps.
  last = tf.reduce_max(tf.where(histogram > 0, tf.range(256), -1), axis=1)
  last_count = tf.gather(histogram, last, batch_dims=1)
  step = (tf.reduce_sum(histogram, axis=1) - last_count) // 255
  below = tf.cumsum(histogram, axis=1, exclusive=True)
  lut = tf.minimum((below + step[:, tf.newaxis] // 2) //
                   tf.maximum(step[:, tf.newaxis], 1), 255)
  return _compiled_lookup(image, values, lut, step)


@tf.function(jit_compile=True)
def _compiled_lookup(image, values, lut, step):
  """Equalize's per-channel table `lut` [channels, 256] applied to `values`
  (where `step` > 0; elsewhere the channel stays as it is)."""
  channels = image_ops.num_channels(image)
  equalized = tf.gather(tf.reshape(lut, [-1]),
                        values + 256 * tf.range(channels))
  return tf.where(step > 0, tf.cast(equalized, tf.float32), image)


def _solarize(image, level, sign):
  del sign
  return tf.where(image >= 256.0 * (1.0 - level), 255.0 - image, image)


def _posterize(image, level, sign):
  del sign
  shift = int(4 * level)
  if shift == 0:
    return image
  return tf.floor(image / 2.0 ** shift) * 2.0 ** shift


def _color(image, level, sign):
  return _blend(_grey(image), image, _enhance_factor(level, sign))


def _contrast(image, level, sign):
  return _blend(tf.reduce_mean(_grey(image)), image,
                _enhance_factor(level, sign))


def _brightness(image, level, sign):
  return _blend(0.0, image, _enhance_factor(level, sign))


def _sharpness(image, level, sign):
  """A blend with PIL's SMOOTH filter (3x3, centre 5, the rest 1, over 13),
  which leaves the border pixels as they are."""
  height, width = image.shape[0], image.shape[1]
  # Written as shifted slices: XLA fuses them into one loop (a depthwise
  # convolution compiled by XLA is 20x slower on CPU).
  total = 4.0 * image[1:-1, 1:-1]
  for dy in range(3):
    for dx in range(3):
      total += image[dy:height - 2 + dy, dx:width - 2 + dx]
  inside = tf.pad(tf.ones_like(total, tf.bool), [[1, 1], [1, 1], [0, 0]])
  smooth = tf.where(inside, tf.pad(total / 13.0, [[1, 1], [1, 1], [0, 0]]),
                    image)
  return _blend(smooth, image, _enhance_factor(level, sign))


def sample_affine(image, transform):
  """`image` sampled at an affine map of its pixel grid, nearest neighbour.

  The same pixels as `tf.raw_ops.ImageProjectiveTransformV3` with
  `interpolation='NEAREST'` and `fill_mode='CONSTANT'` (what TF Model Garden's
  RandAugment uses), as one gather that XLA fuses: a third of its cost.

  Args:
    image: float32 `[height, width, channels]` with a static shape.
    transform: float32 `[6]`, `(a0, a1, a2, b0, b1, b2)`: output pixel
      `(x, y)` reads input pixel `(a0 x + a1 y + a2, b0 x + b1 y + b2)`,
      rounded; outside the image it reads grey 128.

  Returns:
    float32, the image's shape.
  """
  height, width, channels = image.shape
  rows, columns = tf.meshgrid(tf.range(height, dtype=tf.float32),
                              tf.range(width, dtype=tf.float32),
                              indexing='ij')
  x = tf.cast(tf.floor(transform[0] * columns + transform[1] * rows +
                       transform[2] + 0.5), tf.int32)
  y = tf.cast(tf.floor(transform[3] * columns + transform[4] * rows +
                       transform[5] + 0.5), tf.int32)
  inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
  index = (tf.clip_by_value(y, 0, height - 1) * width +
           tf.clip_by_value(x, 0, width - 1))
  pixels = tf.gather(tf.reshape(image, [-1, channels]), index)
  return tf.where(inside[..., tf.newaxis], pixels, _FILL)


def _rotate(image, level, sign):
  angle = sign * math.radians(30.0) * level
  cos, sin = tf.cos(angle), tf.sin(angle)
  centre_y = (image.shape[0] - 1) / 2.0
  centre_x = (image.shape[1] - 1) / 2.0
  return sample_affine(image, tf.stack([
      cos, -sin, centre_x - cos * centre_x + sin * centre_y,
      sin, cos, centre_y - sin * centre_x - cos * centre_y]))


def _shear_x(image, level, sign):
  return sample_affine(image, tf.stack([1.0, sign * 0.3 * level, 0.0,
                                        0.0, 1.0, 0.0]))


def _shear_y(image, level, sign):
  return sample_affine(image, tf.stack([1.0, 0.0, 0.0,
                                        sign * 0.3 * level, 1.0, 0.0]))


def _translate_x(image, level, sign):
  shift = sign * 0.45 * level * image.shape[1]
  return sample_affine(image, tf.stack([1.0, 0.0, shift, 0.0, 1.0, 0.0]))


def _translate_y(image, level, sign):
  shift = sign * 0.45 * level * image.shape[0]
  return sample_affine(image, tf.stack([1.0, 0.0, 0.0, 0.0, 1.0, shift]))


# The paper's 14 ops, in its order: fn(image, M / 10, sign +-1.0).
OPS = {
    'Identity': _identity,
    'AutoContrast': _auto_contrast,
    'Equalize': _equalize,
    'Rotate': _rotate,
    'Solarize': _solarize,
    'Color': _color,
    'Posterize': _posterize,
    'Contrast': _contrast,
    'Brightness': _brightness,
    'Sharpness': _sharpness,
    'ShearX': _shear_x,
    'ShearY': _shear_y,
    'TranslateX': _translate_x,
    'TranslateY': _translate_y,
}


# The ops compiled by XLA, which fuses their passes into one loop: on a
# 224x224 image in tf.data, 2x (Contrast) to 12x (Solarize) less CPU than
# TensorFlow's ops (docs/input_pipeline.md). Posterize and Brightness, two
# cheap passes, cost less than a compiled call; Equalize compiles only its
# lookup.
_UNCOMPILED = (_identity, _equalize, _posterize, _brightness)
_COMPILED = {name: fn if fn in _UNCOMPILED
             else tf.function(fn, jit_compile=True)
             for name, fn in OPS.items()}


def apply_op(image, name, magnitude, sign=1.0):
  """Applies the op `name` of `OPS` at `magnitude` (0-10) to one image.

  Args:
    image: float32 `[height, width, channels]` in [0, 255] (1 or 3
      channels), with a static shape.
    name: A key of `OPS`.
    magnitude: A number in [0, 10].
    sign: +1.0 or -1.0 (or a scalar tensor): the direction of the ops that
      have one.

  Returns:
    float32 `[height, width, channels]` in [0, 255].
  """
  return _COMPILED[name](image, magnitude / MAX_MAGNITUDE,
                         tf.convert_to_tensor(sign, tf.float32))


def _shaped(image, shape):
  # Some ops lose the static channel count (a branch's result has the
  # shapes all branches share), which the next op needs.
  image.set_shape(shape)
  return image


def distort(image, num_layers, magnitude, draws=None, max_value=255.0):
  """RandAugment of one image: `num_layers` ops drawn from `OPS`.

  Args:
    image: float `[height, width, channels]` in [0, max_value], with a
      static shape.
    num_layers: N, the ops per image.
    magnitude: M, on the 0-10 scale.
    draws: The image's `seeds.Draws` (None: TF's stateful random ops).
    max_value: The image's full intensity (255.0, or 1.0 for [0, 1]).

  Returns:
    float32, the image's shape, in [0, max_value].

  Raises:
    ValueError: for a bad N or M, or an image without a static shape.
  """
  num_layers, magnitude = check(num_layers, magnitude)
  draws = draws or seeds.Draws()
  image = tf.cast(image, tf.float32)
  if not image.shape.is_fully_defined():
    raise ValueError(f'RandAugment needs an image of static shape, got '
                     f'{image.shape}')
  if max_value != 255.0:
    image = image * (255.0 / max_value)
  level = magnitude / MAX_MAGNITUDE
  ops = list(_COMPILED.values())
  # One draw for all layers (a small image's cost is its op count): each
  # layer's op and sign.
  uniforms = draws.uniform([num_layers, 2])
  choices = tf.minimum(tf.cast(uniforms[:, 0] * len(ops), tf.int32),
                       len(ops) - 1)
  signs = tf.where(uniforms[:, 1] < 0.5, -1.0, 1.0)
  for layer in range(num_layers):
    image = tf.switch_case(
        choices[layer],
        [lambda fn=fn, x=image, sign=signs[layer]: _shaped(
            fn(x, level, sign), x.shape) for fn in ops])
  if max_value != 255.0:
    image = image * (max_value / 255.0)
  return image
