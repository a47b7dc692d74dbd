"""The example images README classifies are the digits they are named for."""

import os

import numpy as np
import tensorflow as tf

from slimkit.datasets import digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_shipped_examples_are_test_split_digits():
  images, labels = digits.load()['test']
  for label, index in ((7, 0), (3, 8)):
    path = os.path.join(ROOT, 'docs', 'examples', f'digit_{label}.png')
    with open(path, 'rb') as f:
      decoded = tf.io.decode_png(f.read()).numpy()
    assert labels[index] == label
    np.testing.assert_array_equal(
        decoded, digits.to_mnist_layout(images[index:index + 1])[0])
