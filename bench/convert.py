"""Images per second of the ImageNet converter with 1 and 2 worker processes.

Fabricates an ILSVRC-style tree of ImageNet-sized JPEGs (500x375, about the
mean ImageNet photo, quality 90, content that compresses like a photo) in a
temporary directory, then converts it with `convert_imagenet.convert` (read,
full decode check, record, write, rename) once per worker count into a fresh
output directory. Reported: images per second over the whole call, worker
start-up included (each spawned worker imports TensorFlow), and over the
images alone (the rate the progress line shows once workers run).

  python bench/convert.py              # 1200 images, about a minute on 2 cores
  python bench/convert.py --quick      # a smoke run
  python bench/convert.py --workers 1 2 4 --images 5000
"""

import argparse
import io
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from slimkit.datasets import convert_imagenet


def _natural_jpeg(rng, height, width):
  """Smooth shapes plus fine noise: compresses like a photo, not like noise."""
  coarse = rng.uniform(0, 255, (height // 16 + 1, width // 16 + 1, 3))
  image = tf.image.resize(coarse[None], [height, width], method='bicubic')[0]
  image += rng.normal(0, 8, (height, width, 3))
  image = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
  return tf.io.encode_jpeg(image, quality=90).numpy()


def make_tree(root, num_images, num_synsets=10, height=375, width=500, seed=0):
  """Writes train/<synset>/*.JPEG; returns the mean file size in bytes."""
  rng = np.random.RandomState(seed)
  # A few distinct photos, reused under many names: decoding is still real.
  jpegs = [_natural_jpeg(rng, height, width) for _ in range(16)]
  for i in range(num_images):
    synset = f'n{1440764 + i % num_synsets:08d}'
    directory = os.path.join(root, 'train', synset)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f'{synset}_{i}.JPEG'), 'wb') as f:
      f.write(jpegs[i % len(jpegs)])
  return int(np.mean([len(j) for j in jpegs]))


def _steady_rate(log_text, images):
  # The last progress line's rate counts from the call's start; the rate of
  # images alone is the images done between the first and last progress line
  # over the seconds between them.
  points = [(float(t), int(d)) for t, d in re.findall(
      r'at ([\d.]+)s: (\d+)/\d+ images', log_text)]
  points = [p for p in points if p[1] > 0]
  if len(points) < 2 or points[-1][0] <= points[0][0]:
    return float('nan')
  return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


class _TimedLog(io.StringIO):
  """Stamps every progress line with the seconds since creation."""

  def __init__(self):
    super().__init__()
    self._start = time.monotonic()

  def write(self, text):
    if 'images/s' in text:
      text = f'at {time.monotonic() - self._start:.3f}s: ' + text.split(
          '] ', 1)[-1]
    return super().write(text)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--images', type=int, default=1200)
  parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
  parser.add_argument('--shards', type=int, default=16)
  parser.add_argument('--quick', action='store_true',
                      help='120 images, 4 shards')
  args = parser.parse_args()
  if args.quick:
    args.images, args.shards = 120, 4
  tmp = tempfile.mkdtemp(prefix='slimkit-bench-convert-')
  try:
    mean_bytes = make_tree(os.path.join(tmp, 'imagenet'), args.images)
    print(f'{args.images} JPEGs of 500x375 (mean {mean_bytes / 1e3:.0f} kB), '
          f'{args.shards} shards, {os.cpu_count()} cores')
    print('| workers | images/s (whole call) | images/s (images only) | '
          'seconds |')
    print('|---|---|---|---|')
    for workers in args.workers:
      out = os.path.join(tmp, f'out-{workers}')
      log = _TimedLog()
      start = time.monotonic()
      reports = convert_imagenet.convert(
          out, imagenet_dir=os.path.join(tmp, 'imagenet'),
          train_shards=args.shards, num_workers=workers, log=log)
      seconds = time.monotonic() - start
      images = reports['train'].num_records
      steady = _steady_rate(log.getvalue(), images)
      print(f'| {workers} | {images / seconds:.1f} | {steady:.1f} | '
            f'{seconds:.1f} |', flush=True)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
  main()
