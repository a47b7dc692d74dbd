"""Numeric properties of every preprocessing style in both modes."""

import numpy as np
import pytest
import tensorflow as tf

from slimkit.nets import nets_factory
from slimkit.preprocessing import cifarnet_preprocessing
from slimkit.preprocessing import image_ops
from slimkit.preprocessing import inception_preprocessing
from slimkit.preprocessing import preprocessing_factory
from slimkit.preprocessing import vgg_preprocessing

STYLES = ('inception', 'vgg', 'cifarnet', 'lenet', 'alexnet')
# Output and input sizes per style; vgg scales the shorter side to >= 256.
SIZES = {'inception': (40, 48, 56), 'vgg': (32, 40, 60), 'cifarnet': (32, 32,
         32), 'lenet': (28, 28, 32), 'alexnet': (36, 36, 32)}


def _random_image(height, width, channels=3, seed=0):
  rng = np.random.RandomState(seed)
  return tf.constant(rng.randint(0, 256, (height, width, channels)), tf.uint8)


def _check_range(style, out):
  out = out.numpy()
  if style == 'inception':
    assert out.min() >= -1.0 and out.max() <= 1.0
  elif style == 'lenet':
    assert out.min() >= -1.0 and out.max() < 1.0
  elif style == 'vgg':
    # 0-255 pixels minus the RGB means (a random scale may overshoot a bit).
    assert out.min() >= -124.0 and out.max() <= 152.0
  else:  # per-image standardization
    assert abs(out.mean()) < 1e-3
    assert abs(out.std() - 1.0) < 1e-2


def test_styles_are_registered():
  assert preprocessing_factory.list_preprocessing() == sorted(STYLES)


@pytest.mark.parametrize('is_training', [False, True])
@pytest.mark.parametrize('style', STYLES)
def test_shape_dtype_range(style, is_training):
  out_h, out_w, in_size = SIZES[style]
  preprocess = preprocessing_factory.get_preprocessing(style, is_training)
  image = _random_image(in_size, in_size + 8)
  if style in ('cifarnet', 'lenet'):  # crop-or-pad styles at their own size
    image = _random_image(in_size, in_size)
  out = preprocess(image, out_h, out_w)
  assert out.shape == (out_h, out_w, 3)
  assert out.dtype == tf.float32
  _check_range(style, out)
  again = preprocess(image, out_h, out_w)
  if not is_training or style in ('lenet', 'alexnet'):
    np.testing.assert_array_equal(out.numpy(), again.numpy())  # deterministic
  else:
    assert not np.array_equal(out.numpy(), again.numpy())  # augmented


@pytest.mark.parametrize('is_training', [False, True])
@pytest.mark.parametrize('style', STYLES)
def test_grayscale_and_one_channel_inputs(style, is_training):
  out_h, out_w, in_size = SIZES[style]
  gray = preprocessing_factory.get_preprocessing(style, is_training,
                                                 use_grayscale=True)
  assert gray(_random_image(in_size, in_size), out_h, out_w).shape == (
      out_h, out_w, 1)
  # A 1-channel image (MNIST) works in every style, with or without the flag.
  one = _random_image(in_size, in_size, channels=1)
  for fn in (gray, preprocessing_factory.get_preprocessing(style,
                                                           is_training)):
    out = fn(one, out_h, out_w)
    assert out.shape == (out_h, out_w, 1)
    _check_range(style, out)


def test_model_names_use_the_nets_registry_style():
  for name in nets_factory.list_networks():
    expected = nets_factory.get_entry(name).preprocessing_name
    assert preprocessing_factory.get_preprocessing(name).style.name == expected
  assert preprocessing_factory.get_preprocessing('resnet_v1_50').style.name == (
      'vgg')
  assert preprocessing_factory.get_preprocessing('alexnet_v2').style.name == (
      'alexnet')


def test_unknown_name_lists_valid_ones():
  with pytest.raises(ValueError) as raised:
    preprocessing_factory.get_preprocessing('incepton')
  message = str(raised.value)
  assert "'incepton'" in message and 'inception' in message
  for style in STYLES:
    assert style in message


def test_lenet_values():
  image = tf.fill([28, 28, 1], tf.constant(192, tf.uint8))
  out = preprocessing_factory.get_preprocessing('lenet')(image, 32, 30)
  assert out.shape == (32, 30, 1)
  assert float(out[16, 15, 0]) == (192 - 128) / 128  # inside: the pixel
  assert float(out[0, 15, 0]) == -1.0  # padding: zero pixels


def test_inception_eval_of_a_constant_image():
  image = tf.fill([50, 70, 3], tf.constant(51, tf.uint8))
  out = preprocessing_factory.get_preprocessing('inception')(image, 20, 30)
  np.testing.assert_allclose(out.numpy(), 2 * 51 / 255 - 1, atol=1e-6)


def test_inception_central_crop_keeps_the_centre():
  # A bright frame 1/16 of each side wide lies outside a 0.875 central crop.
  image = np.zeros([64, 64, 3], np.uint8)
  image[:4], image[-4:], image[:, :4], image[:, -4:] = 255, 255, 255, 255
  out = preprocessing_factory.get_preprocessing('inception')(
      tf.constant(image), 56, 56)
  np.testing.assert_allclose(out.numpy(), -1.0)


def test_inception_encoded_path_matches_decoded_path():
  image = _random_image(45, 61).numpy()
  image = tf.image.resize(image[None], [45, 61])[0]  # any JPEG will do
  encoded = tf.io.encode_jpeg(tf.cast(image, tf.uint8), quality=90)
  for fmt_encoded in (encoded, tf.io.encode_png(tf.cast(image, tf.uint8))):
    preprocess = preprocessing_factory.get_preprocessing('inception')
    decoded = tf.io.decode_image(fmt_encoded, channels=3)
    fused = preprocess.from_encoded(fmt_encoded, 24, 24).numpy()
    plain = preprocess(decoded, 24, 24).numpy()
    # libjpeg upsamples chroma differently at a crop window's edge: a few
    # border pixels may differ slightly, the rest is identical.
    assert np.mean(fused == plain) > 0.9
    np.testing.assert_allclose(fused, plain, atol=0.15)
  train = preprocessing_factory.get_preprocessing('inception', True)
  box = tf.constant([[0.0, 0.0, 0.5, 0.5]])
  out = train.from_encoded(encoded, 24, 24, bbox=box)
  assert out.shape == (24, 24, 3)


def test_inception_training_crop_follows_the_boxes():
  # Only the box (top-left 20%) is bright; a crop covers 10% of it (a strip
  # at least 2 pixels wide), so every sampled crop shows some of it. Output
  # pixels are spaced < 1 input pixel apart, so the resize cannot miss it.
  image = np.zeros([100, 100, 3], np.uint8)
  image[:20, :20] = 255
  preprocess = preprocessing_factory.get_preprocessing('inception', True)
  box = tf.constant([[0.0, 0.0, 0.2, 0.2]])
  for _ in range(10):
    out = preprocess(tf.constant(image), 128, 128, bbox=box).numpy()
    assert out.max() > 0.5  # black stays below -0.74 after distortion
  # No boxes (empty or None) means the whole image: still valid outputs.
  for bbox in (None, tf.zeros([0, 4])):
    assert preprocess(tf.constant(image), 16, 16, bbox=bbox).shape == (
        16, 16, 3)


def test_fast_saturation_equals_tensorflows():
  rng = np.random.RandomState(3)
  # Brightness runs first and does not clip: inputs may leave [0, 1].
  image = tf.constant(rng.uniform(-0.1, 1.1, (20, 24, 3)), tf.float32)
  image = tf.concat([image, tf.zeros([1, 24, 3]), tf.fill([1, 24, 3], .5)], 0)
  for factor in (0.5, 1.0, 1.3, 1.5):
    np.testing.assert_allclose(
        inception_preprocessing.adjust_saturation(image, factor).numpy(),
        tf.image.adjust_saturation(image, factor).numpy(), atol=1e-5)


@pytest.mark.parametrize('compiled', [False, True])
@pytest.mark.parametrize('max_value', [1.0, 255.0])
def test_fused_fast_distortion_equals_the_op_sequence(max_value, compiled):
  distort = (inception_preprocessing.compiled_distort_and_scale if compiled
             else inception_preprocessing.distort_and_scale)
  rng = np.random.RandomState(4)
  image = tf.constant(rng.uniform(0, max_value, (16, 12, 3)), tf.float32)
  # Black (a negative delta first makes its limit negative), grey (no
  # chroma), pure red (saturated), a nearly grey pixel.
  special = tf.constant([[[0, 0, 0], [.5, .5, .5], [1, 0, 0], [.5, .5, .501]]
                         ] * 3, tf.float32) * max_value
  image = tf.concat([image, tf.tile(special, [1, 3, 1])], 0)
  for delta, factor in ((0.1, 1.4), (-0.12, 0.6), (0.05, 1.0), (-0.1, 1.5)):
    for brightness_first in (True, False):
      unit = image / max_value
      if brightness_first:
        expected = tf.image.adjust_saturation(unit + delta, factor)
      else:
        expected = tf.image.adjust_saturation(unit, factor) + delta
      expected = tf.clip_by_value(expected, 0.0, 1.0) * 2.0 - 1.0
      fused = distort(
          image, delta * max_value, factor, tf.constant(brightness_first),
          max_value)
      np.testing.assert_allclose(fused.numpy(), expected.numpy(), atol=1e-5)
      flipped = distort(
          image, delta * max_value, factor, tf.constant(brightness_first),
          max_value, flip=tf.constant(True))
      np.testing.assert_allclose(flipped.numpy(), expected.numpy()[:, ::-1],
                                 atol=1e-5)


@pytest.mark.parametrize('dtype', [tf.uint8, tf.float32])
def test_resize_bilinear_equals_tf1s_resize_bilinear(dtype):
  rng = np.random.RandomState(5)
  for source, size in (((37, 50), (24, 24)), ((20, 16), (48, 40)),
                       ((30, 30), (30, 30)), ((9, 70), (13, 11))):
    image = tf.cast(rng.randint(0, 256, source + (3,)), dtype)
    ours = image_ops.resize_bilinear(image, *size)
    assert ours.dtype == tf.float32 and ours.shape == size + (3,)
    # TF-Slim's resize (TF 1: no half-pixel centres), on the raw input type.
    np.testing.assert_array_equal(
        ours.numpy(), tf.compat.v1.image.resize_bilinear(
            image[None], size, align_corners=False)[0].numpy())


def test_inception_training_flips_about_half_the_images():
  # Dark left half, bright right half; no crop, so only the flip moves it.
  image = tf.concat([tf.zeros([20, 10, 3], tf.uint8),
                     tf.fill([20, 10, 3], tf.constant(255, tf.uint8))], 1)
  train = preprocessing_factory.get_preprocessing('inception', True)
  flipped = 0
  for _ in range(40):
    out = train(image, 16, 16, crop_image=False).numpy()
    flipped += int(out[:, :8].mean() > out[:, 8:].mean())
  assert 8 <= flipped <= 32


def test_inception_distort_color_orderings():
  image = tf.fill([8, 8, 3], 0.5)
  for fast_mode, count in ((True, 2), (False, 4)):
    for ordering in range(count):
      out = inception_preprocessing.distort_color(image, ordering, fast_mode)
      assert 0.0 <= float(tf.reduce_min(out)) <= float(tf.reduce_max(out)) <= 1
    with pytest.raises(ValueError, match='color_ordering'):
      inception_preprocessing.distort_color(image, count, fast_mode)
  slow = preprocessing_factory.get_preprocessing('inception', True)
  for _ in range(8):  # every resize method and ordering gets drawn
    out = slow(_random_image(30, 40), 16, 16, fast_mode=False)
    assert out.shape == (16, 16, 3) and out.dtype == tf.float32
    assert -1.0 <= out.numpy().min() <= out.numpy().max() <= 1.0


def test_vgg_resize_and_means():
  # The shorter side is scaled to exactly 256, keeping the aspect ratio
  # (the longer side rounded to nearest, as TF-Slim rounds it).
  resized = vgg_preprocessing.aspect_preserving_resize(
      tf.zeros([375, 500, 3], tf.uint8), 256)
  assert resized.shape == (256, 341, 3)
  image = tf.fill([300, 400, 3], tf.constant(200, tf.uint8))
  out = preprocessing_factory.get_preprocessing('vgg')(image, 224, 224)
  np.testing.assert_allclose(out.numpy()[0, 0], [200 - 123.68, 200 - 116.78,
                                                 200 - 103.94], rtol=1e-5)
  small = preprocessing_factory.get_preprocessing('vgg', True)(
      image, 24, 24, resize_side_min=30, resize_side_max=40)
  assert small.shape == (24, 24, 3)


def _best_crop_match(resized, out):
  """Least max-difference of `out` to any crop (or flipped crop) of
  `resized`, with the (flipped, top, left) that gives it."""
  best = (np.inf, None)
  for flipped, source in ((False, resized), (True, resized[:, ::-1])):
    windows = np.lib.stride_tricks.sliding_window_view(
        source, out.shape, axis=(0, 1, 2))[:, :, 0]
    diffs = np.abs(windows - out).max(axis=(2, 3, 4))
    top, left = np.unravel_index(np.argmin(diffs), diffs.shape)
    if diffs[top, left] < best[0]:
      best = (diffs[top, left], (flipped, top, left))
  return best


@pytest.mark.parametrize('height,width,side,out_h,out_w', [
    (40, 60, 48, 32, 32),   # downsampling
    (50, 40, 70, 60, 64),   # upsampling, crops touching the edges
    (9, 13, 40, 40, 40),    # upsampling by 4, crop = resized height
])
def test_vgg_training_crop_equals_resize_then_crop(height, width, side, out_h,
                                                   out_w):
  # Training interpolates only the crop's pixels; that must be a crop of
  # the whole resized image (as TF-Slim made it), flipped or not.
  image = _random_image(height, width, seed=height)
  resized = vgg_preprocessing.aspect_preserving_resize(image, side).numpy()
  means = np.array([123.68, 116.78, 103.94], np.float32)
  train = preprocessing_factory.get_preprocessing('vgg', True)
  found = set()
  for draw in range(6):
    if draw % 2:
      out = train.from_encoded(tf.io.encode_png(image), out_h, out_w,
                               resize_side_min=side, resize_side_max=side)
    else:
      out = train(image, out_h, out_w, resize_side_min=side,
                  resize_side_max=side)
    diff, where = _best_crop_match(resized, out.numpy() + means)
    assert diff < 0.01, (diff, where)
    found.add(where)
  assert len(found) > 1  # the crop (or flip) is random


def test_vgg_training_from_a_jpeg_decodes_only_the_crop():
  image = tf.image.resize(_random_image(8, 10)[None], [45, 61])[0]
  encoded = tf.io.encode_jpeg(tf.cast(image, tf.uint8), quality=95)
  resized = vgg_preprocessing.aspect_preserving_resize(
      tf.io.decode_jpeg(encoded, channels=3), 60).numpy()
  train = preprocessing_factory.get_preprocessing('vgg', True)
  out = train.from_encoded(encoded, 32, 32, resize_side_min=60,
                           resize_side_max=60).numpy()
  means = np.array([123.68, 116.78, 103.94], np.float32)
  # libjpeg upsamples chroma differently at the window's edge.
  diff, _ = _best_crop_match(resized, out + means)
  assert diff < 20


def test_vgg_output_larger_than_the_resized_image_is_named():
  train = preprocessing_factory.get_preprocessing('vgg', True)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='smaller than the 32x32 output'):
    train(_random_image(20, 20), 32, 32, resize_side_min=24,
          resize_side_max=24)
  # Inside tf.data too, where ops run in no fixed order unless told.
  images = tf.data.Dataset.from_tensors(_random_image(20, 20)).map(
      lambda image: train(image, 32, 32, resize_side_min=24,
                          resize_side_max=24))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='smaller than the 32x32 output'):
    next(iter(images))


@pytest.mark.parametrize('flip', [False, True])
@pytest.mark.parametrize('rows,columns,size,draws', [
    (32, 32, 32, (0.3, 0.95)),
    (32, 32, 32, (0.0, 0.0)),        # crop at the top left of the padding
    (32, 32, 32, (0.9999, 0.9999)),  # ... and at the bottom right
    (36, 41, 28, (0.5, 0.77)),       # larger than the output, not square
])
def test_cifarnet_training_equals_tf_slims_op_sequence(flip, rows, columns,
                                                       size, draws):
  # Given the same draws, our distortions equal TF-Slim's ops in TF-Slim's
  # order, whatever the brightness delta (which standardization removes).
  image = tf.cast(_random_image(rows, columns, seed=3), tf.float32)
  all_draws = tf.constant(list(draws) + [0.1 if flip else 0.9, 0.4])
  ours = cifarnet_preprocessing._distorted(image, all_draws, size, size,
                                          padding=4)
  padded = tf.pad(image, [[4, 4], [4, 4], [0, 0]])
  top = int(draws[0] * (rows + 8 - size + 1))
  left = int(draws[1] * (columns + 8 - size + 1))
  crop = padded[top:top + size, left:left + size]
  if flip:
    crop = crop[:, ::-1]
  for delta in (-cifarnet_preprocessing._BRIGHTNESS_MAX_DELTA, 0.0, 40.0):
    theirs = tf.image.per_image_standardization(tf.image.adjust_contrast(
        tf.image.adjust_brightness(crop, delta), 0.2 + 1.6 * 0.4))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-4)


def test_standardize_equals_tensorflows_op():
  for image in (tf.cast(_random_image(32, 32, seed=5), tf.float32),
                tf.fill([8, 6, 3], 7.0),  # constant: the minimum std
                tf.cast(_random_image(5, 9, channels=1), tf.float32)):
    np.testing.assert_allclose(
        image_ops.standardize(image).numpy(),
        tf.image.per_image_standardization(image).numpy(), atol=1e-5)
  # Unknown static shape (inside tf.data the decoded size is dynamic).
  dynamic = tf.function(image_ops.standardize).get_concrete_function(
      tf.TensorSpec([None, None, 3], tf.float32))
  image = tf.cast(_random_image(7, 11, seed=6), tf.float32)
  np.testing.assert_allclose(
      dynamic(image).numpy(),
      tf.image.per_image_standardization(image).numpy(), atol=1e-5)


def test_cifarnet_training_pads_and_crops():
  # A crop of the padded image may show the zero padding: after flips and
  # shifts the output differs from the evaluation output.
  image = _random_image(32, 32)
  train = preprocessing_factory.get_preprocessing('cifarnet', True)
  outs = [train(image, 32, 32, padding=4).numpy() for _ in range(3)]
  assert all(o.shape == (32, 32, 3) for o in outs)
  assert not np.array_equal(outs[0], outs[1])
