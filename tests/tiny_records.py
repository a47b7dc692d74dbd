"""Tiny, learnable TFRecord datasets in TF-Slim's record schema, for tests.

Written here from scratch (tf.train.Example + tf.io.encode_png) so that the
training and evaluation tests do not depend on the converters. Each class k
is a bright square at its own place on a dark noisy background, so a net
learns it in a few dozen steps.

  dataset_dir = tiny_records.write_dataset(tmp_path, 'cifar10',
                                           {'train': 64, 'test': 32})
  split = dataset_factory.get_split('cifar10', 'train', dataset_dir)
"""

import os

import numpy as np
import tensorflow as tf

# name -> (file pattern, image size, channels), as the real converters write.
LAYOUTS = {
    'cifar10': ('cifar10_%s.tfrecord', 32, 3),
    'mnist': ('mnist_%s.tfrecord', 28, 1),
    'digits': ('digits_%s.tfrecord', 28, 1),
}
NUM_CLASSES = 10


def make_images(num_examples, size, channels, num_classes=NUM_CLASSES,
                seed=0):
  """Returns uint8 images `[n, size, size, channels]` and int64 labels."""
  rng = np.random.RandomState(seed)
  labels = np.arange(num_examples) % num_classes
  rng.shuffle(labels)
  images = rng.randint(0, 60, size=(num_examples, size, size, channels))
  cell = size // 4
  for i, label in enumerate(labels):
    row, col = divmod(int(label), 4)
    images[i, row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = 230
  return images.astype(np.uint8), labels.astype(np.int64)


def _example(image, label):
  feature = {
      'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[tf.io.encode_png(image).numpy()])),
      'image/format': tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[b'png'])),
      'image/class/label': tf.train.Feature(
          int64_list=tf.train.Int64List(value=[int(label)])),
      'image/height': tf.train.Feature(
          int64_list=tf.train.Int64List(value=[image.shape[0]])),
      'image/width': tf.train.Feature(
          int64_list=tf.train.Int64List(value=[image.shape[1]])),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature))


def write_records(path, images, labels):
  """Writes uint8 `images` and their labels as PNG records to `path`."""
  with tf.io.TFRecordWriter(str(path)) as writer:
    for image, label in zip(images, labels):
      writer.write(_example(image, label).SerializeToString())


def write_dataset(dataset_dir, dataset_name='cifar10', sizes=None, seed=0):
  """Writes one file per split and `labels.txt`, named as the real dataset.

  Args:
    dataset_dir: Folder to write (created).
    dataset_name: One of `LAYOUTS`.
    sizes: `{split_name: num_examples}`; default 64 train and 40 test.
    seed: Seed of the images (each split uses its own offset).

  Returns:
    `dataset_dir` as a string.
  """
  pattern, size, channels = LAYOUTS[dataset_name]
  sizes = sizes or {'train': 64, 'test': 40}
  dataset_dir = str(dataset_dir)
  os.makedirs(dataset_dir, exist_ok=True)
  for i, (split_name, count) in enumerate(sorted(sizes.items())):
    images, labels = make_images(count, size, channels, seed=seed + i)
    write_records(os.path.join(dataset_dir, pattern % split_name), images,
                  labels)
  with open(os.path.join(dataset_dir, 'labels.txt'), 'w') as f:
    f.writelines(f'{k}:class_{k}\n' for k in range(NUM_CLASSES))
  return dataset_dir
