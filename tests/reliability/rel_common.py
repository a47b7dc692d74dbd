"""Shared helpers of the reliability suite: tiny datasets and script runs.

Every test here runs the real scripts in processes of their own (real
files; real subprocesses where signals are sent), on LeNet with SGD and
batches of 4 so that a run takes seconds. `run` forks them from a process
that has imported TensorFlow (tests/script_runner.py).
"""

import os
import sys

import tensorflow as tf

from tests import script_runner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, 'train_image_classifier.py')
EVAL = os.path.join(ROOT, 'eval_image_classifier.py')
CONVERT = os.path.join(ROOT, 'download_and_convert_data.py')


def env():
  """The environment of a script: quiet TF, the checkout importable."""
  result = dict(os.environ)
  result['TF_CPP_MIN_LOG_LEVEL'] = '2'
  result['PYTHONPATH'] = ROOT + os.pathsep + result.get('PYTHONPATH', '')
  result['CUDA_VISIBLE_DEVICES'] = ''
  return result


def train_args(dataset_dir, train_dir, max_steps, **extra):
  """The command line of a tiny LeNet training run on tiny MNIST records."""
  flags = dict(train_dir=train_dir, dataset_name='mnist',
               dataset_dir=dataset_dir, model_name='lenet', optimizer='sgd',
               batch_size=4, max_number_of_steps=max_steps,
               save_interval_secs=0, save_summaries_secs=100000,
               log_every_n_steps=1, num_readers=1,
               num_preprocessing_threads=1, learning_rate=0.01)
  flags.update(extra)
  return [sys.executable, TRAIN] + [f'--{k}={v}' for k, v in flags.items()
                                    if v is not None]


def eval_args(dataset_dir, checkpoint_path, **extra):
  flags = dict(checkpoint_path=checkpoint_path, dataset_name='mnist',
               dataset_dir=dataset_dir, dataset_split_name='test',
               model_name='lenet', batch_size=8, num_preprocessing_threads=1)
  flags.update(extra)
  return [sys.executable, EVAL] + [f'--{k}={v}' for k, v in flags.items()
                                   if v is not None]


def run(args, timeout=240, **kwargs):
  """Runs a script to completion; returns the CompletedProcess (text).

  The script runs in a process forked with TensorFlow already imported
  (tests/script_runner.py).
  """
  return script_runner.run(args, capture_output=True, text=True, env=env(),
                           cwd=ROOT, timeout=timeout, **kwargs)


def checkpoint_step(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return int(reader.get_tensor('global_step/.ATTRIBUTES/VARIABLE_VALUE'))


def read_whole_checkpoint(prefix):
  """Reads every tensor of a checkpoint; raises if any is unreadable."""
  reader = tf.train.load_checkpoint(prefix)
  values = {}
  for key in reader.get_variable_to_shape_map():
    values[key] = reader.get_tensor(key)
  return values


def tree(directory):
  """Every path under `directory` (files and folders), relative."""
  found = set()
  for root, dirs, files in os.walk(directory):
    for name in dirs + files:
      found.add(os.path.relpath(os.path.join(root, name), directory))
  return found


def png_bomb(width=10000, height=10000):
  """A real, valid 1-bit grayscale PNG of width x height zero pixels.

  10000 x 10000 = 100 M pixels (over Pillow's 89.5 M limit) in about 12 KB:
  decoding it would take 100 MB for one channel, 300 MB as RGB.
  """
  import struct
  import zlib

  def chunk(kind, data):
    body = kind + data
    return (struct.pack('>I', len(data)) + body +
            struct.pack('>I', zlib.crc32(body) & 0xffffffff))

  row = b'\x00' + b'\x00' * ((width + 7) // 8)
  compressor = zlib.compressobj(9)
  idat = b''.join(compressor.compress(row) for _ in range(height))
  idat += compressor.flush()
  ihdr = struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', idat) +
          chunk(b'IEND', b''))


def write_records(path, examples):
  """Writes serialized `tf.train.Example`s (or raw bytes) to a TFRecord."""
  with tf.io.TFRecordWriter(str(path)) as writer:
    for example in examples:
      writer.write(example if isinstance(example, bytes)
                   else example.SerializeToString())


def flip_byte_in_record(path, record_index=2):
  """Flips one payload byte of record `record_index` (its CRC then fails)."""
  data = bytearray(open(path, 'rb').read())
  pos = 0
  for _ in range(record_index):
    length = int.from_bytes(data[pos:pos + 8], 'little')
    pos += 16 + length
  data[pos + 12 + 20] ^= 0xFF  # 12 bytes of length + CRC, then the data.
  with open(path, 'wb') as f:
    f.write(bytes(data))


def truncate_in_record(path, record_index=2):
  """Cuts the file in the middle of record `record_index`'s data."""
  data = open(path, 'rb').read()
  pos = 0
  for _ in range(record_index):
    length = int.from_bytes(data[pos:pos + 8], 'little')
    pos += 16 + length
  with open(path, 'wb') as f:
    f.write(data[:pos + 12 + 40])


def train_in_process(dataset_dir, train_dir, steps, **options):
  """Trains LeNet on tiny MNIST records in this process; returns the result.

  For tests where training is the setup, not what is under test (saves a
  TensorFlow start-up). `options` go to `trainer.TrainOptions`.
  """
  from slimkit.datasets import dataset_factory
  from slimkit.datasets import input_pipeline
  from slimkit.deployment import model_deploy
  from slimkit.training import optimization
  from slimkit.training import trainer
  from slimkit.nets import nets_factory
  from slimkit.preprocessing import preprocessing_factory

  split = dataset_factory.get_split('mnist', 'train', dataset_dir)
  preprocess = preprocessing_factory.get_preprocessing('lenet', True)
  return trainer.train(
      strategy=model_deploy.DeploymentConfig().strategy(),
      network_fn=lambda: nets_factory.get_network_fn('lenet', 10,
                                                     is_training=True),
      dataset_fn=lambda ctx: input_pipeline.make_dataset(
          split, preprocess, batch_size=4, is_training=True, image_size=28,
          input_context=ctx),
      optimizer_fn=lambda lr: optimization.build_optimizer('sgd', lr),
      learning_rate=0.01,
      options=trainer.TrainOptions(train_dir=str(train_dir), batch_size=4,
                                   max_number_of_steps=steps,
                                   save_summaries_secs=10 ** 6, **options))
