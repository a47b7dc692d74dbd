"""Small image helpers shared by the preprocessing styles.

Every style accepts images with 1 or 3 channels (MNIST and digits records are
1-channel; TF-Slim fed them to the nets as they were) and converts to
grayscale only where `use_grayscale` asks for it.
"""

import tensorflow as tf


def num_channels(image):
  """Returns the static channel count of a `[height, width, channels]` image.

  Raises:
    ValueError: when the rank or the channel count is not known statically.
  """
  shape = image.shape
  if shape.rank != 3 or shape[-1] is None:
    raise ValueError(
        f'Expected an image [height, width, channels] with a known channel '
        f'count, got shape {shape}. Decode with channels=1 or 3.')
  return shape[-1]


def to_grayscale(image):
  """Converts an RGB image to 1 channel; a 1-channel image passes unchanged.

  Being a no-op on 1 channel lets the input pipeline and a style both honour
  `use_grayscale` without converting twice.
  """
  if num_channels(image) == 1:
    return image
  return tf.image.rgb_to_grayscale(image)


def to_float(image):
  """Casts to float32 keeping the value range (uint8 stays in [0, 255])."""
  return tf.cast(image, tf.float32)


def to_unit_float(image):
  """Converts to float32 in [0, 1] (uint8 is divided by 255; floats kept)."""
  if image.dtype == tf.float32:
    return image
  return tf.image.convert_image_dtype(image, tf.float32)


def resize_bilinear(image, height, width):
  """TF-Slim's bilinear resize (TF 1's, no half-pixel centres) as float32.

  TF-Slim ran on TF 1, whose `tf.image.resize_bilinear(...,
  align_corners=False)` and `tf.image.resize_images` sample output pixel `i`
  at source position `i * in_size / out_size` (on TF 2:
  `tf.compat.v1.image.resize_bilinear(..., align_corners=False)`, the raw op
  with `half_pixel_centers=False`). TF 2's `tf.image.resize` samples at
  `(i + 0.5) * in_size / out_size - 0.5` instead, which shifts the image by up
  to half a pixel: a TF-Slim checkpoint would see other pixels than the ones
  its accuracy was measured on (docs/input_pipeline.md).

  Bit for bit the same result for any input type: TensorFlow's kernel
  interpolates in float32 either way, but it reads a float32 image faster
  than a uint8 one (casting first saves about 20 us per 224x224 output on a
  2-core CPU, more than the cast costs), and the raw op skips the
  wrapper's shape handling.

  Args:
    image: `[height, width, channels]` of any real type.
    height: Output height.
    width: Output width.

  Returns:
    float32 `[height, width, channels]`.
  """
  return tf.raw_ops.ResizeBilinear(
      images=tf.expand_dims(to_float(image), 0), size=[height, width],
      align_corners=False, half_pixel_centers=False)[0]


def crop_or_pad(image, height, width):
  """`tf.image.resize_with_crop_or_pad`, with a fast path for the right size.

  Records are mostly written at the net's size already (CIFAR-10 at 32,
  MNIST at 28); skipping the general op's shape checks and slicing then
  saves a large share of the per-image cost of the small-image styles.
  """
  shape = tf.shape(image)
  already = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1],
                                                                width))
  result = tf.cond(
      already, lambda: image,
      lambda: tf.image.resize_with_crop_or_pad(image, height, width))
  result.set_shape([height, width, image.shape[-1]])
  return result


def window_of(image):
  """`fn(offsets [2], sizes [2])` -> the pixels of a decoded image there."""
  channels = num_channels(image)
  return lambda offsets, sizes: tf.slice(
      image, tf.concat([offsets, [0]], 0), tf.concat([sizes, [channels]], 0))


# Pixels of context decoded around a JPEG window (see _decode_jpeg_window).
_JPEG_WINDOW_MARGIN = 1


def _decode_jpeg_window(encoded, shape, offsets, sizes, channels):
  """The pixels of a window of a JPEG, exactly as decoding it whole gives.

  libjpeg's upsampling of the subsampled colour planes interpolates from
  neighbouring rows and columns, which `decode_and_crop_jpeg` does not read
  at the window's edges: there 0.2% of the values of Inception's central
  crop came out different (0.6% for a 100x140 image), by up to 9 levels of
  255. Decoding one more pixel on
  each side and cutting it off gives the whole-image pixels (no mismatch in
  1,680 random windows of 4:2:0 and 4:4:4 JPEGs at quality 75-97).
  """
  begin = tf.maximum(offsets - _JPEG_WINDOW_MARGIN, 0)
  end = tf.minimum(offsets + sizes + _JPEG_WINDOW_MARGIN, shape[:2])
  window = tf.io.decode_and_crop_jpeg(
      encoded, tf.concat([begin, end - begin], 0), channels=channels)
  return tf.slice(window, tf.concat([offsets - begin, [0]], 0),
                  tf.concat([sizes, [channels]], 0))


def crop_from_encoded(encoded, channels, crop_fn):
  """Runs `crop_fn(image_shape, decode_window)` on encoded PNG or JPEG bytes.

  `crop_fn` gets the image's shape and a `window_of`-like function to read
  pixels with. A JPEG's shape comes from its header and only the windows
  asked for are decoded (`tf.io.decode_and_crop_jpeg`); other formats are
  decoded whole and sliced. Either way the pixels are those of decoding the
  whole image and slicing, as TF-Slim did (see `_decode_jpeg_window`).

  Args:
    encoded: Scalar string tensor: the image file's bytes.
    channels: Channels to decode (1 or 3).
    crop_fn: `fn(image_shape int32 [3], decode_window) -> tensor`.

  Returns:
    What `crop_fn` returns.
  """

  def jpeg():
    shape = tf.io.extract_jpeg_shape(encoded)
    return crop_fn(
        shape, lambda offsets, sizes: _decode_jpeg_window(
            encoded, shape, offsets, sizes, channels))

  def other():
    image = tf.io.decode_image(encoded, channels=channels,
                               expand_animations=False)
    return crop_fn(tf.shape(image), window_of(image))

  return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def standardize(image):
  """`tf.image.per_image_standardization` in half the ops.

  Equal up to float rounding: dividing the centred image by
  `max(std, 1/sqrt(N))` is multiplying it by `rsqrt(max(variance, 1/N))`,
  and the variance is taken of the centred image already made. A 32x32
  image costs tf.data per op, not per pixel.

  Args:
    image: float32 `[height, width, channels]`.

  Returns:
    float32 image with mean 0 and standard deviation 1 (less for a nearly
    constant image).
  """
  num_values = tf.cast(tf.size(image), tf.float32)
  if image.shape.is_fully_defined():  # a constant instead of two ops
    num_values = float(image.shape.num_elements())
  centred = image - tf.reduce_mean(image)
  variance = tf.reduce_mean(tf.square(centred))
  return centred * tf.math.rsqrt(tf.maximum(variance, 1.0 / num_values))
