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
  """`tf.image.resize(image, [height, width])` (bilinear) as float32.

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
      half_pixel_centers=True)[0]


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


def crop_from_encoded(encoded, channels, crop_fn):
  """Runs `crop_fn(image_shape, decode_window)` on encoded PNG or JPEG bytes.

  `crop_fn` gets the image's shape and a `window_of`-like function to read
  pixels with. A JPEG's shape comes from its header and only the windows
  asked for are decoded (`tf.io.decode_and_crop_jpeg`); other formats are
  decoded whole and sliced.

  Args:
    encoded: Scalar string tensor: the image file's bytes.
    channels: Channels to decode (1 or 3).
    crop_fn: `fn(image_shape int32 [3], decode_window) -> tensor`.

  Returns:
    What `crop_fn` returns.
  """

  def jpeg():
    return crop_fn(
        tf.io.extract_jpeg_shape(encoded),
        lambda offsets, sizes: tf.io.decode_and_crop_jpeg(
            encoded, tf.concat([offsets, sizes], 0), channels=channels))

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
