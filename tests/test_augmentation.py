"""MixUp, CutMix and RandAugment: the library, the loss, and the script.

The resumed and repeated runs with these augmentations on are in
test_reproducibility.py; the refused flag values in test_train_eval.py.
"""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from slimkit import seeds
from slimkit.datasets import dataset_factory
from slimkit.datasets import input_pipeline
from slimkit.training import trainer
from slimkit.preprocessing import mixing
from slimkit.preprocessing import preprocessing_factory
from slimkit.preprocessing import randaugment
from tests import script_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 10


@pytest.fixture(scope='module')
def digits(digits_dir):
  return digits_dir


def _label_images(batch=8, height=12, width=20):
  """Images whose pixels are their one-hot label (one channel per class).

  The mean over the pixels of a mixed image is then how much of each class
  it shows, whatever the mixing did.
  """
  labels = np.arange(batch)
  images = np.broadcast_to(np.eye(NUM_CLASSES, dtype=np.float32)[labels][
      :, np.newaxis, np.newaxis, :], (batch, height, width, NUM_CLASSES))
  return tf.constant(images), tf.constant(labels, tf.int64)


# --- MixUp and CutMix. ---


@pytest.mark.parametrize('mixup_alpha, cutmix_alpha', [
    (0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_labels_sum_to_one_and_weigh_what_the_images_show(mixup_alpha,
                                                         cutmix_alpha):
  images, labels = _label_images()
  mixer = mixing.BatchMixer(NUM_CLASSES, mixup_alpha, cutmix_alpha)
  weights = []
  for i in range(8):
    mixed, soft = (x.numpy() for x in mixer(images, labels,
                                            seed=seeds.fold(5, i)))
    assert soft.shape == (8, NUM_CLASSES) and soft.dtype == np.float32
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    # The share of each class in each image (its pixel mean) is its label
    # weight: the same pairs, the same weights or areas.
    np.testing.assert_allclose(mixed.mean(axis=(1, 2)), soft, atol=1e-5)
    # Image i is mixed with image 7 - i only, by one weight per batch.
    partner = soft[np.arange(8), 7 - np.arange(8)]
    np.testing.assert_allclose(soft[np.arange(8), np.arange(8)] + partner,
                               1.0, atol=1e-6)
    np.testing.assert_allclose(partner, partner[0], atol=1e-6)
    weights.append(partner[0])
    if not mixup_alpha:  # pasted, not blended
      assert np.isin(mixed, [0.0, 1.0]).all()
  assert any(0.05 < w < 0.95 for w in weights), weights


def test_with_both_alphas_each_batch_gets_one_of_the_two():
  images, labels = _label_images()
  mixer = mixing.BatchMixer(NUM_CLASSES, mixup_alpha=0.4, cutmix_alpha=1.0)
  kinds = set()
  for i in range(16):
    mixed = mixer(images, labels, seed=seeds.fold(6, i))[0].numpy()
    kinds.add('cutmix' if np.isin(mixed, [0.0, 1.0]).all() else 'mixup')
  assert kinds == {'mixup', 'cutmix'}
  again = mixer(images, labels, seed=seeds.fold(6, 3))[0].numpy()
  np.testing.assert_array_equal(
      again, mixer(images, labels, seed=seeds.fold(6, 3))[0].numpy())
  # Without a seed: TF's stateful draws.
  assert mixer(images, labels)[1].shape == (8, NUM_CLASSES)


def test_the_mixed_stream_is_reproducible_and_resumes_exactly(digits):
  split = dataset_factory.get_split('digits', 'train', digits)
  preprocess = preprocessing_factory.get_preprocessing(
      'inception', True, randaugment=(2, 9))
  stream = lambda **extra: input_pipeline.make_dataset(
      split, preprocess, batch_size=4, is_training=True, image_size=28,
      num_readers=2, num_preprocessing_threads=3, seed=4, mixup_alpha=0.4,
      cutmix_alpha=1.0, **extra)
  batches = [(x.numpy(), y.numpy()) for x, y in stream().take(3)]
  assert batches[0][1].shape == (4, NUM_CLASSES)
  np.testing.assert_allclose(batches[0][1].sum(axis=1), 1.0, atol=1e-6)
  # Another pipeline resumed after two batches: the third batch, augmented
  # and mixed as it was (so the stream is also a function of the seed).
  # (The sizes of test_reproducibility's runs: XLA compiles the ops once.)
  images, labels = next(iter(stream(records_consumed=8)))
  np.testing.assert_array_equal(images.numpy(), batches[2][0])
  np.testing.assert_array_equal(labels.numpy(), batches[2][1])


def test_evaluation_never_augments(digits):
  split = dataset_factory.get_split('digits', 'test', digits)
  preprocess = preprocessing_factory.get_preprocessing('lenet', False)
  with pytest.raises(ValueError, match='evaluation never mixes'):
    input_pipeline.make_dataset(split, preprocess, batch_size=8,
                                is_training=False, image_size=28,
                                mixup_alpha=0.2)
  with pytest.raises(ValueError, match='evaluation never augments'):
    preprocessing_factory.get_preprocessing('lenet', False,
                                            randaugment=(2, 9))
  with pytest.raises(ValueError, match=r'cutmix_alpha.*-1'):
    mixing.BatchMixer(NUM_CLASSES, cutmix_alpha=-1)


# --- The loss of soft labels. ---


def test_the_loss_takes_soft_labels_and_label_smoothing_composes():
  rng = np.random.RandomState(0)
  logits = tf.constant(rng.normal(0, 2, (6, 5)), tf.float32)
  first, second, lam = [0, 1, 2, 3, 4, 0], [4, 3, 2, 1, 0, 1], 0.3
  onehot = lambda labels: tf.one_hot(labels, 5)
  soft = lam * onehot(first) + (1 - lam) * onehot(second)
  # Int labels: the arithmetic of TF-Slim's loss, unchanged.
  expected = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
      labels=onehot(first), logits=logits))
  assert float(trainer.classification_loss(logits, tf.constant(first))) == (
      float(expected))
  for smoothing in (0.0, 0.1):
    ours = float(trainer.classification_loss(logits, soft,
                                             label_smoothing=smoothing))
    keras_loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=smoothing)(soft, logits)
    np.testing.assert_allclose(ours, float(keras_loss), rtol=1e-6)
    # Smoothing the mix is mixing the smoothed one-hot labels.
    smooth_first, smooth_second = (
        onehot(labels) * (1 - smoothing) + smoothing / 5
        for labels in (first, second))
    mixed_smoothed = lam * smooth_first + (1 - lam) * smooth_second
    np.testing.assert_allclose(ours, float(tf.reduce_mean(
        tf.nn.softmax_cross_entropy_with_logits(labels=mixed_smoothed,
                                                logits=logits))), rtol=1e-6)
  # The auxiliary head takes the same soft labels.
  aux = logits * 0.5
  with_aux = trainer.classification_loss(logits, soft, {'AuxLogits': aux})
  np.testing.assert_allclose(
      float(with_aux), float(trainer.classification_loss(logits, soft)) +
      trainer.AUX_LOSS_WEIGHT * float(trainer.classification_loss(aux, soft)),
      rtol=1e-6)


# --- RandAugment. ---


def _photo(channels=3, height=30, width=40):
  rng = np.random.RandomState(0)
  return (rng.uniform(0, 1, (height, width, channels)) ** 2 * 200 +
          20).astype(np.uint8)


def test_randaugment_ops_equal_pil():
  image_module = pytest.importorskip('PIL.Image')
  from PIL import ImageEnhance, ImageOps
  photo = _photo()
  pil = image_module.fromarray(photo)
  image = tf.constant(photo, tf.float32)
  magnitude, level = 7.0, 0.7
  exact = {
      'Equalize': ImageOps.equalize(pil),
      'Solarize': ImageOps.solarize(pil, 256 * (1 - level)),
      'Posterize': ImageOps.posterize(pil, 8 - int(4 * level)),
  }
  for name, reference in exact.items():
    np.testing.assert_array_equal(
        randaugment.apply_op(image, name, magnitude).numpy(),
        np.asarray(reference, np.float32), err_msg=name)
  # PIL rounds its results to uint8: within a level of ours.
  rounded = [('AutoContrast', 1.0, ImageOps.autocontrast(pil))]
  for sign in (1.0, -1.0):
    factor = 1 + sign * 0.9 * level
    for name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
      rounded.append((name, sign, getattr(ImageEnhance, name)(pil).enhance(
          factor)))
  for name, sign, reference in rounded:
    np.testing.assert_allclose(
        randaugment.apply_op(image, name, magnitude, sign).numpy(),
        np.asarray(reference, np.float32), atol=1.5, err_msg=name)


def test_randaugment_translates_by_whole_pixels_and_fills_grey():
  photo = _photo().astype(np.float32)
  # 0.45 * M/10 of the 40-pixel width: 9 pixels at M=5.
  shifted = randaugment.apply_op(tf.constant(photo), 'TranslateX', 5.0,
                                 1.0).numpy()
  np.testing.assert_allclose(shifted[:, :31], photo[:, 9:], atol=1e-4)
  np.testing.assert_array_equal(shifted[:, 31:], 128.0)


def test_randaugment_samples_as_tensorflows_projective_transform():
  image = tf.constant(_photo(), tf.float32)
  angle = 0.4
  for transform in ([1.0, 0.27, 0.0, 0.0, 1.0, 0.0],
                    [np.cos(angle), -np.sin(angle), 6.0, np.sin(angle),
                     np.cos(angle), -9.0]):
    reference = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=tf.constant([transform + [0.0, 0.0]], tf.float32),
        output_shape=[30, 40], fill_value=128.0, interpolation='NEAREST',
        fill_mode='CONSTANT')[0]
    np.testing.assert_array_equal(
        randaugment.sample_affine(image, tf.constant(transform,
                                                     tf.float32)).numpy(),
        reference.numpy())


@pytest.mark.parametrize('channels', [1, 3])
def test_randaugment_stays_in_range(channels):
  image = tf.constant(_photo(channels), tf.float32)
  extreme = tf.constant(np.where(_photo(channels) > 100, 255, 0), tf.float32)
  for name in randaugment.OPS:
    for source in (image, extreme):
      for sign in (1.0, -1.0):
        out = randaugment.apply_op(source, name, 10.0, sign).numpy()
        assert out.shape == source.shape, name
        assert out.min() >= 0.0 and out.max() <= 255.0, name
  for i in range(6):
    out = randaugment.distort(image, 3, 10, seeds.Draws(seeds.fold(2, i)))
    assert 0.0 <= float(tf.reduce_min(out)) <= float(tf.reduce_max(out)) <= (
        255.0)


@pytest.mark.parametrize('style', preprocessing_factory.list_preprocessing())
def test_randaugment_in_every_style_is_a_function_of_the_seed(style):
  image = tf.constant(np.random.RandomState(0).randint(0, 256, (60, 70, 3)),
                      tf.uint8)
  options = ({'resize_side_min': 40, 'resize_side_max': 80}
             if style == 'vgg' else {})
  augmented = preprocessing_factory.get_preprocessing(style, True,
                                                      randaugment=(2, 9))
  plain = preprocessing_factory.get_preprocessing(style, True)
  run = lambda preprocess, key: preprocess(
      image, 32, 32, seed=seeds.fold(1, key), **options).numpy()
  first = run(augmented, 2)
  np.testing.assert_array_equal(first, run(augmented, 2))
  assert not np.array_equal(first, run(augmented, 3))
  assert not np.array_equal(first, run(plain, 2))
  assert augmented.accepts_seed
  if style in ('lenet', 'alexnet'):
    # They draw nothing without RandAugment: no seed is folded for them.
    assert not plain.accepts_seed
  if augmented.style.preprocess_encoded is not None:
    np.testing.assert_allclose(augmented.from_encoded(
        tf.io.encode_png(image), 32, 32, seed=seeds.fold(1, 2),
        **options).numpy(), first, atol=1e-4)


@pytest.mark.parametrize('text, message', [
    ('2', 'expected N,M'), ('2,x', "got 'x' in '2,x'"),
    ('0,5', 'must be an int >= 1, got 0'), ('2,11', r'\[0, 10\], got 11'),
    ('2.5,9', "got '2.5'")])
def test_bad_randaugment_values_are_refused_naming_them(text, message):
  with pytest.raises(ValueError, match=message):
    randaugment.parse(text)
  assert randaugment.parse(' 3, 4.5') == (3, 4.5)


# --- Through the script. ---


def test_the_script_trains_with_every_augmentation_and_validates(digits,
                                                                 tmp_path):
  train_dir = tmp_path / 'train'
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  result = script_runner.run(
      [sys.executable, os.path.join(ROOT, 'train_image_classifier.py'),
       f'--train_dir={train_dir}', '--dataset_name=digits',
       f'--dataset_dir={digits}', '--model_name=lenet',
       '--preprocessing_name=cifarnet', '--train_image_size=28',
       '--batch_size=8', '--max_number_of_steps=2', '--log_every_n_steps=1',
       '--save_summaries_secs=0', '--optimizer=sgd', '--mixup_alpha=0.2',
       '--cutmix_alpha=1.0', '--randaugment=2,9', '--label_smoothing=0.1',
       '--eval_every_n_steps=2', '--validation_max_batches=2',
       '--random_seed=3'],
      capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
      check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert ('Augmenting beyond the style\'s own: --mixup_alpha=0.2 '
          '--cutmix_alpha=1.0 --randaugment=2,9') in result.stderr
  # Validation takes the hard labels of the eval input.
  assert 'Validation at global step 2: eval/Accuracy[' in result.stderr
  assert os.path.exists(train_dir / 'model.ckpt-2.index')
  with open(train_dir / 'flags.txt') as f:
    assert '--randaugment=2,9\n' in f.read()
