"""Evaluation preprocessing gives TF-Slim's pixels, on odd sizes and shapes.

The references are TF-Slim's own formulas written with TF 1's ops as TF 2
still has them (`tf.compat.v1.image.resize_bilinear(align_corners=False)`,
`tf.image.central_crop`, `tf.image.per_image_standardization`, ...), never
with our preprocessing code, so a checkpoint trained by TF-Slim sees here
what it saw there.
"""

import numpy as np
import pytest
import tensorflow as tf

from slimkit import seeds
from slimkit.preprocessing import inception_preprocessing
from slimkit.preprocessing import preprocessing_factory
from slimkit.preprocessing import vgg_preprocessing

# (height, width): both orientations, odd sides, one smaller than the output.
SHAPES = ((300, 451), (451, 300), (427, 640), (333, 500), (100, 140))
_VGG_MEANS = np.array([123.68, 116.78, 103.94], np.float32)


def photo_like(height, width, seed=0):
  """A smooth image with edges and some noise: what a photo looks like to a
  resize (a uniform-noise image would make every shift look equally bad)."""
  rng = np.random.RandomState(seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  channels = []
  for c in range(3):
    fy, fx = rng.uniform(0.01, 0.08, 2)
    wave = np.sin(y * fy + c) * np.cos(x * fx - c)
    edges = ((x + 2 * y + 40 * c) // 37 % 2) * 0.6
    channels.append(wave + edges)
  image = np.stack(channels, -1)
  image = (image - image.min()) / (image.max() - image.min()) * 230 + 10
  image += rng.normal(0, 6, image.shape)
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _slim_resize_bilinear(image, height, width):
  """TF 1's `tf.image.resize_bilinear(..., align_corners=False)`."""
  return tf.compat.v1.image.resize_bilinear(
      tf.convert_to_tensor(image)[None], [height, width],
      align_corners=False)[0].numpy()


def slim_inception_eval(image, height, width, central_fraction=0.875):
  """TF-Slim's `inception_preprocessing.preprocess_for_eval`."""
  image = tf.convert_to_tensor(image)
  if image.dtype != tf.float32:
    image = tf.image.convert_image_dtype(image, tf.float32)
  image = tf.image.central_crop(image, central_fraction=central_fraction)
  image = _slim_resize_bilinear(image, height, width)
  return (image - 0.5) * 2.0


def slim_smallest_size_at_least(height, width, smallest_side):
  """TF-Slim's `vgg_preprocessing._smallest_size_at_least`, in float32."""
  height, width = np.float32(height), np.float32(width)
  side = np.float32(smallest_side)
  scale = side / width if height > width else side / height
  return int(np.rint(height * scale)), int(np.rint(width * scale))


def slim_vgg_eval(image, height, width, resize_side=256):
  """TF-Slim's `vgg_preprocessing.preprocess_for_eval`."""
  new_height, new_width = slim_smallest_size_at_least(
      image.shape[0], image.shape[1], resize_side)
  resized = _slim_resize_bilinear(image, new_height, new_width)
  top = int((new_height - height) / 2)  # TF-Slim's to_int32 of a true div
  left = int((new_width - width) / 2)
  crop = resized[top:top + height, left:left + width]
  return crop.astype(np.float32) - _VGG_MEANS


def slim_cifarnet_eval(image, height, width):
  """TF-Slim's `cifarnet_preprocessing.preprocess_for_eval`."""
  image = tf.cast(tf.convert_to_tensor(image), tf.float32)
  image = tf.image.resize_with_crop_or_pad(image, height, width)
  return tf.image.per_image_standardization(image).numpy()


def slim_lenet(image, height, width):
  """TF-Slim's `lenet_preprocessing.preprocess_image` (both modes)."""
  image = tf.cast(tf.convert_to_tensor(image), tf.float32)
  image = tf.image.resize_with_crop_or_pad(image, height, width)
  return ((image - 128.0) / 128.0).numpy()


# style -> (reference, output size, input value scale: 1 or 255, tolerance)
REFERENCES = {
    'inception': (slim_inception_eval, 224, 1.0, 1e-5),
    'vgg': (slim_vgg_eval, 224, 255.0, 1e-3),
    'cifarnet': (slim_cifarnet_eval, 32, 255.0, 1e-4),
    'alexnet': (slim_cifarnet_eval, 64, 255.0, 1e-4),
    'lenet': (slim_lenet, 28, 255.0, 1e-5),
}


@pytest.mark.parametrize('style', sorted(REFERENCES))
@pytest.mark.parametrize('dtype', ['uint8', 'float32'])
def test_eval_output_equals_tf_slims(style, dtype):
  reference, size, scale, tolerance = REFERENCES[style]
  preprocess = preprocessing_factory.get_preprocessing(style, False)
  for i, (height, width) in enumerate(SHAPES):
    image = photo_like(height, width, seed=i)
    if dtype == 'float32':  # the style's float convention: [0, 1] or 0-255
      image = image.astype(np.float32) / (255.0 / scale)
    ours = preprocess(tf.constant(image), size, size).numpy()
    expected = reference(image, size, size)
    assert ours.shape == expected.shape, (style, height, width)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=tolerance,
                               err_msg=f'{style} {height}x{width} {dtype}')


@pytest.mark.parametrize('style', ['inception', 'vgg'])
def test_eval_from_encoded_png_equals_tf_slims(style):
  # The input pipeline's path: decoding (a JPEG only inside the crop) and
  # preprocessing in one step.
  reference, size, _, tolerance = REFERENCES[style]
  preprocess = preprocessing_factory.get_preprocessing(style, False)
  for i, (height, width) in enumerate(SHAPES[:3]):
    image = photo_like(height, width, seed=10 + i)
    ours = preprocess.from_encoded(tf.io.encode_png(image), size, size)
    np.testing.assert_allclose(ours.numpy(), reference(image, size, size),
                               rtol=0, atol=tolerance)


def test_inception_eval_from_jpeg_equals_tf_slims_on_the_decoded_image():
  reference, size, _, tolerance = REFERENCES['inception']
  preprocess = preprocessing_factory.get_preprocessing('inception', False)
  for i, (height, width) in enumerate(SHAPES):
    encoded = tf.io.encode_jpeg(photo_like(height, width, seed=20 + i),
                                quality=90)
    decoded = tf.io.decode_jpeg(encoded, channels=3).numpy()
    ours = preprocess.from_encoded(encoded, size, size).numpy()
    np.testing.assert_allclose(ours, reference(decoded, size, size), rtol=0,
                               atol=tolerance)


def test_shorter_side_and_rounding_are_tf_slims():
  sizes = vgg_preprocessing._smallest_size_at_least
  # 451 * 256 / 300 = 384.85: rounded to nearest, not floored.
  assert tuple(int(v) for v in sizes(300, 451, 256)) == (256, 385)
  assert tuple(int(v) for v in sizes(451, 300, 256)) == (385, 256)
  rng = np.random.RandomState(3)
  pairs = [tuple(p) for p in rng.randint(17, 2000, (400, 2))]
  pairs += [(375, 500), (427, 640), (333, 500), (100, 140), (256, 256)]
  for side in (224, 256, 288, 512):
    heights, widths = sizes(tf.constant([h for h, _ in pairs]),
                            tf.constant([w for _, w in pairs]), side)
    for (h, w), new_h, new_w in zip(pairs, heights.numpy(), widths.numpy()):
      expected = slim_smallest_size_at_least(h, w, side)
      assert (int(new_h), int(new_w)) == expected, (h, w, side)
      assert min(expected) == side  # TF-Slim's float32 rint lands exactly
  resized = vgg_preprocessing.aspect_preserving_resize(
      tf.zeros([300, 451, 3], tf.uint8), 256)
  assert resized.shape == (256, 385, 3)


def test_inception_training_resize_methods_are_tf1s():
  # fast_mode=False draws one of TF-Slim's four resize methods, each TF 1's
  # (no half-pixel centres). An upscale of a random image by odd factors tells
  # the methods and both samplings apart.
  methods = inception_preprocessing._RESIZE_METHODS
  image = tf.constant(np.random.RandomState(4).rand(8, 8, 3), tf.float32)
  tf1 = {m: tf.compat.v1.image.resize_images(image, [13, 11], method=m)
         for m in methods}
  for m in ('bilinear', 'nearest', 'bicubic'):  # the test can tell
    assert not np.allclose(tf1[m], tf.image.resize(image, [13, 11], method=m))
  found = set()
  for s in range(40):  # seeded draws: the same methods come up every run
    draws = seeds.Draws(tf.constant([s, 3], tf.int64))
    out = inception_preprocessing._resize(image, 13, 11, fast_mode=False,
                                          draws=draws)
    matches = [m for m in methods if np.array_equal(out, tf1[m])]
    assert len(matches) == 1, 'not one of TF 1\'s four resize methods'
    found.update(matches)
  assert found == set(methods)
