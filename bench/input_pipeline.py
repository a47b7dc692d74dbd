"""Images per second of the input pipeline beside decode-only, same records.

Writes synthetic records to a temporary directory, then measures, in one run:

  decode-only   read + parse + decode (parallel, AUTOTUNE), no preprocessing
  train         make_dataset(is_training=True): read, shuffle, decode,
                augment, batch, prefetch
  eval          make_dataset(is_training=False): ordered pass, no augmentation

for MNIST-style records (28x28 grayscale PNG, lenet preprocessing at 28),
CIFAR-10-style records (32x32 PNG, cifarnet preprocessing at 32) and
ImageNet-style records (about 500x375 JPEG with boxes, inception
preprocessing at 224). The goal is a full pipeline at >= 80% of decode-only.
For the small images, which the pipeline batches before decoding
(`input_pipeline._batch_first`), the rows marked "per-image map" are the
same pipelines mapped one image at a time, as before.
A second table gives training with each opt-in augmentation on
(`--randaugment=2,9`, `--mixup_alpha=0.2`, `--cutmix_alpha=1.0`), measured
in the same rounds, against plain training.

  python bench/input_pipeline.py            # about two minutes on 2 cores
  python bench/input_pipeline.py --quick    # a smoke run
  python bench/input_pipeline.py --no_augmentations   # the first table only
"""

import argparse
import contextlib
import os
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from slimkit.datasets import input_pipeline
from slimkit.datasets.split import DatasetSplit
from slimkit.preprocessing import preprocessing_factory


def _feature_bytes(value):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _feature_int(value):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _feature_floats(values):
  return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _natural_image(rng, height, width, channels=3):
  """Smooth shapes plus fine noise: compresses like a photo, not like noise."""
  coarse = rng.uniform(0, 255, (height // 16 + 1, width // 16 + 1, channels))
  image = tf.image.resize(coarse[None], [height, width], method='bicubic')[0]
  image += rng.normal(0, 8, (height, width, channels))
  return tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)


def write_records(directory, name, count, num_files, height, width, fmt,
                  with_boxes, seed=0, channels=3):
  """Writes `count` synthetic records in `num_files` TF-Slim-style files."""
  rng = np.random.RandomState(seed)
  # A few distinct images, reused: writing stays quick, decoding is real.
  images = [_natural_image(rng, height, width, channels) for _ in range(16)]
  encode = (tf.io.encode_png if fmt == b'png'
            else (lambda x: tf.io.encode_jpeg(x, quality=90)))
  encoded = [encode(x).numpy() for x in images]
  writers = [tf.io.TFRecordWriter(os.path.join(
      directory, f'{name}-{i:05d}-of-{num_files:05d}')) for i in range(
          num_files)]
  for i in range(count):
    feature = {
        'image/encoded': _feature_bytes(encoded[i % len(encoded)]),
        'image/format': _feature_bytes(fmt),
        'image/class/label': _feature_int(i % 10),
        'image/height': _feature_int(height),
        'image/width': _feature_int(width),
    }
    if with_boxes:
      y0, x0 = rng.uniform(0, 0.4, 2)
      y1, x1 = rng.uniform(0.6, 1.0, 2)
      for key, value in (('ymin', y0), ('xmin', x0), ('ymax', y1),
                         ('xmax', x1)):
        feature[f'image/object/bbox/{key}'] = _feature_floats([value])
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    writers[i % num_files].write(example.SerializeToString())
  for writer in writers:
    writer.close()
  mean_kb = np.mean([len(e) for e in encoded]) / 1024
  return DatasetSplit(dataset_name=name, split_name='train',
                      file_pattern=os.path.join(directory, f'{name}-*'),
                      num_samples=count, num_classes=10, channels=channels,
                      has_bboxes=with_boxes), mean_kb


def decode_only(split, num_readers):
  """Read, parse and decode in parallel: the reference rate."""
  files = tf.data.Dataset.from_tensor_slices(split.files()).repeat()
  records = files.interleave(tf.data.TFRecordDataset,
                             cycle_length=num_readers,
                             num_parallel_calls=num_readers,
                             deterministic=False)
  images = records.map(lambda r: tf.shape(split.decode(r)['image'])[0],
                       num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=False)
  return images.batch(32).prefetch(tf.data.AUTOTUNE)


def measure(dataset, num_images, warmup_batches=5):
  """Returns (images per second, CPU microseconds per image) after warm-up.

  CPU time (all threads of this process) per image is the cost on a
  dedicated machine; wall-clock rates also move with other processes' load.
  """
  iterator = iter(dataset)
  for _ in range(warmup_batches):
    next(iterator)
  seen = 0
  cpu_start, start = time.process_time(), time.perf_counter()
  while seen < num_images:
    batch = next(iterator)
    seen += int(tf.shape(batch[0] if isinstance(batch, tuple) else batch)[0])
  wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
  return seen / wall, cpu / seen * 1e6


# Training with each opt-in augmentation: (row, preprocessing options,
# make_dataset options).
AUGMENTATIONS = (
    ('train, randaugment=2,9', dict(randaugment=(2, 9)), {}),
    ('train, mixup_alpha=0.2', {}, dict(mixup_alpha=0.2)),
    ('train, cutmix_alpha=1.0', {}, dict(cutmix_alpha=1.0)),
)


@contextlib.contextmanager
def _per_image_map():
  """make_dataset as before small images were batched before decoding."""
  batch_first = input_pipeline._batch_first  # pylint: disable=protected-access
  input_pipeline._batch_first = lambda *args: False  # pylint: disable=protected-access
  try:
    yield
  finally:
    input_pipeline._batch_first = batch_first  # pylint: disable=protected-access


def run(split, style, size, num_images, repeats, threads, augmentations=(),
        batch_size=32):
  """Best wall-clock rate and least CPU per image of each pipeline."""
  pipelines = [('train', True, {}, {}), ('eval', False, {}, {})] + [
      (mode, True, options, mixing) for mode, options, mixing in augmentations]
  if input_pipeline._batch_first(split, size, size):  # pylint: disable=protected-access
    pipelines[2:2] = [('train, per-image map', True, {}, {}),
                      ('eval, per-image map', False, {}, {})]
  rates, costs = {}, {}
  for _ in range(repeats):  # interleaved rounds: the machine may be shared
    results = {'decode-only': measure(decode_only(split, 4), num_images)}
    for mode, is_training, options, mixing in pipelines:
      preprocess = preprocessing_factory.get_preprocessing(
          style, is_training, **options)
      with (_per_image_map() if 'per-image' in mode
            else contextlib.nullcontext()):
        dataset = input_pipeline.make_dataset(
            split, preprocess, batch_size=batch_size, is_training=is_training,
            image_size=size, num_preprocessing_threads=threads,
            num_epochs=None if is_training else 1000, **mixing)
      results[mode] = measure(dataset, num_images)
    for key, (rate, cost) in results.items():
      rates[key] = max(rates.get(key, 0.0), rate)
      costs[key] = min(costs.get(key, float('inf')), cost)
  return rates, costs


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--num_preprocessing_threads', type=int, default=4,
                      help='0 = AUTOTUNE')
  parser.add_argument('--batch_size', type=int, default=32,
                      help='Of the pipelines (not decode-only); tf.data\'s '
                      'work per element is paid once per batch for the '
                      'small images.')
  parser.add_argument('--no_augmentations', action='store_true',
                      help='Skip the opt-in augmentations\' table.')
  args = parser.parse_args(argv)
  scale = 0.2 if args.quick else 1.0
  with tempfile.TemporaryDirectory() as directory:
    mnist, mnist_kb = write_records(directory, 'mnist_train', 10000, 1, 28,
                                    28, b'png', with_boxes=False, channels=1)
    cifar, cifar_kb = write_records(directory, 'cifar10_train', 10000, 1, 32,
                                    32, b'png', with_boxes=False)
    imagenet, imagenet_kb = write_records(directory, 'train', 1024, 8, 375,
                                          500, b'jpeg', with_boxes=True)
    cases = (
        (f'mnist 28x28x1 PNG ({mnist_kb:.1f} KB), lenet 28', mnist, 'lenet',
         28, int(20000 * scale)),
        (f'cifar10 32x32 PNG ({cifar_kb:.1f} KB), cifarnet 32', cifar,
         'cifarnet', 32, int(20000 * scale)),
        (f'imagenet 500x375 JPEG ({imagenet_kb:.0f} KB), inception 224',
         imagenet, 'inception', 224, int(2000 * scale)),
    )
    print(f'threads={args.num_preprocessing_threads or "AUTOTUNE"} '
          f'batch={args.batch_size} '
          f'cores={os.cpu_count()} tf={tf.__version__}')
    print('| records | pipeline | img/s (wall, best) | % of decode-only | '
          'CPU us/img (least) | decode-only CPU / this CPU |')
    print('|---|---|---|---|---|---|')
    augmented = []
    for title, split, style, size, count in cases:
      rates, costs = run(
          split, style, size, count, args.repeats,
          args.num_preprocessing_threads,
          # The augmentations are the RGB nets' (no MNIST row).
          () if args.no_augmentations or split is mnist else AUGMENTATIONS,
          batch_size=args.batch_size)
      for mode in [m for m in ('decode-only', 'train', 'eval',
                               'train, per-image map',
                               'eval, per-image map') if m in rates]:
        print(f'| {title} | {mode} | {rates[mode]:.0f} | '
              f'{100 * rates[mode] / rates["decode-only"]:.0f}% | '
              f'{costs[mode]:.0f} | '
              f'{100 * costs["decode-only"] / costs[mode]:.0f}% |', flush=True)
      augmented.extend((title, mode, rates, costs)
                       for mode, _, _ in AUGMENTATIONS if mode in rates)
    if augmented:
      print('\n| records | pipeline | img/s (wall, best) | % of train | '
            'CPU us/img (least) | CPU us/img over train |')
      print('|---|---|---|---|---|---|')
      for title, mode, rates, costs in augmented:
        print(f'| {title} | {mode} | {rates[mode]:.0f} | '
              f'{100 * rates[mode] / rates["train"]:.0f}% | '
              f'{costs[mode]:.0f} | {costs[mode] - costs["train"]:+.0f} |')


if __name__ == '__main__':
  main()
