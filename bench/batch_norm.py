"""Training time of our batch norm beside Keras's BatchNormalization.

Both layers own the same variables; ours runs TF's fused kernel. Each shape
is one ResNet-50 stage at 112 px, batch 16 (where batch norm runs 53 times a
step). Measured: a training forward and backward pass (batch norm, ReLU, a
loss) in one compiled function, in rounds that alternate which layer goes
first; the best round of each is kept (the machine may be shared).

  python bench/batch_norm.py
  python bench/batch_norm.py --dtype=bfloat16 --rounds=5
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import keras
import tensorflow as tf

from bench import common
from slimkit.nets import layers

# (batch, height, width, channels) of ResNet-50's stages at 112 px, batch 16.
SHAPES = [(16, 28, 28, 256), (16, 14, 14, 512), (16, 7, 7, 1024),
          (16, 4, 4, 2048)]


def _step_fn(layer):
  @tf.function
  def step(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = tf.nn.relu(layer(x, training=True))
      loss = tf.reduce_sum(tf.square(tf.cast(y, tf.float32)))
    return tape.gradient(loss, [x] + layer.trainable_weights)
  return step


def _time(step, x, iterations):
  step(x)[0].numpy()  # Traced and warm.
  start = time.perf_counter()
  for _ in range(iterations):
    out = step(x)
  out[0].numpy()
  return (time.perf_counter() - start) / iterations


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dtype', default='float32',
                      choices=['float32', 'bfloat16'])
  parser.add_argument('--iterations', type=int, default=50)
  parser.add_argument('--rounds', type=int, default=3)
  args = parser.parse_args(argv)
  dtype = tf.as_dtype(args.dtype)
  print(f'machine: {common.machine()}; load average '
        f'{common.load_average():.2f}; {args.dtype}', flush=True)
  print('| shape | Keras ms | ours ms | Keras / ours |')
  print('|---|---|---|---|')
  total = {'keras': 0.0, 'ours': 0.0}
  for shape in SHAPES:
    x = tf.cast(tf.random.stateless_normal(shape, seed=[0, 0]), dtype)
    policy = 'mixed_bfloat16' if args.dtype == 'bfloat16' else 'float32'
    candidates = {
        'keras': keras.layers.BatchNormalization(
            momentum=0.997, epsilon=1e-5, scale=True, dtype=policy),
        'ours': layers.batch_norm(decay=0.997, epsilon=1e-5, scale=True,
                                  dtype=policy),
    }
    steps = {name: _step_fn(layer)
             for name, layer in candidates.items()}
    best = {}
    for r in range(args.rounds):
      order = ['keras', 'ours'] if r % 2 == 0 else ['ours', 'keras']
      for name in order:
        seconds = _time(steps[name], x, args.iterations)
        best[name] = min(best.get(name, seconds), seconds)
    for name in total:
      total[name] += best[name]
    print(f'| {shape} | {best["keras"] * 1e3:.2f} | {best["ours"] * 1e3:.2f} '
          f'| {best["keras"] / best["ours"]:.2f} |', flush=True)
  print(f'| all | {total["keras"] * 1e3:.2f} | {total["ours"] * 1e3:.2f} | '
        f'{total["keras"] / total["ours"]:.2f} |')


if __name__ == '__main__':
  main()
