"""The training summaries write what TensorFlow's and TensorBoard's ops write.

`summaries.histograms` traces faster than `tf.summary.histogram` (one
computation for all, no branch, no linspace composite); the events it writes
must be the same: tag, plugin metadata and the float64 bucket tensor, bit for
bit, read back with TF's summary iterator. Likewise `summaries.zero_fraction`
and `tf.math.zero_fraction`.
"""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from slimkit.training import summaries

_RNG = np.random.RandomState(0)
DATA = {
    'normal': _RNG.normal(0.3, 2.0, 65536).astype(np.float32),
    # ReLU activations: many exact zeros, ties at bucket edges.
    'relu': np.maximum(_RNG.normal(0, 1, (8, 5, 5, 7)), 0).astype(np.float32),
    'integers': _RNG.randint(-3, 40, 999).astype(np.float32),
    'single_value': np.full([4, 6], 0.7, np.float32),
    'two_values': np.array([0.1, 0.7, 0.7, 0.1, 0.1], np.float32),
    'one_element': np.array([-2.5], np.float32),
    'wide': np.concatenate([_RNG.uniform(-1e6, 1e-6, 50),
                            [np.float32(3e7)]]).astype(np.float32),
    'float64': _RNG.uniform(1 / 3, 2 / 3, 777),
    'bfloat16': tf.cast(_RNG.normal(0, 1, 300), tf.bfloat16),
}


def _events(directory):
  """`{tag: (plugin name, plugin content, float64 tensor)}` of a writer."""
  found = {}
  for path in glob.glob(os.path.join(str(directory), 'events.out.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        plugin = value.metadata.plugin_data
        found[value.tag] = (event.step, plugin.plugin_name, plugin.content,
                            tf.make_ndarray(value.tensor))
  return found


def _write(directory, data, ours):
  """Writes `data`'s histograms with ours or TensorBoard's; its events."""
  writer = tf.summary.create_file_writer(str(directory))

  # In a traced function, as the summary step writes them, of its inputs
  # (constants would be folded away before the ops run).
  @tf.function(autograph=False)
  def write(values):
    with writer.as_default(step=3):
      named = [(f'activations/{name}', value)
               for name, value in zip(data, values)]
      if ours:
        summaries.histograms(named)
      else:
        for name, value in named:
          tf.summary.histogram(name, value)

  write([tf.constant(value) for value in data.values()])
  writer.close()
  return _events(directory)


def _assert_same_events(ours, reference):
  assert sorted(ours) == sorted(reference)
  for tag, (step, plugin, content, buckets) in reference.items():
    assert plugin == 'histograms'
    assert ours[tag][:3] == (step, plugin, content)
    assert ours[tag][3].dtype == buckets.dtype == np.float64
    assert ours[tag][3].shape == buckets.shape
    np.testing.assert_array_equal(ours[tag][3], buckets, err_msg=tag)


def test_histograms_are_tensorboards(tmp_path):
  ours = _write(tmp_path / 'ours', DATA, ours=True)
  reference = _write(tmp_path / 'tensorboard', DATA, ours=False)
  assert sorted(reference) == sorted(f'activations/{name}' for name in DATA)
  assert all(buckets.shape == (summaries.HISTOGRAM_BUCKETS, 3)
             for *_, buckets in reference.values())
  _assert_same_events(ours, reference)


@pytest.mark.parametrize('name', ['normal', 'single_value', 'one_element'])
def test_buckets_count_every_element_once(name):
  # TensorBoard's convention, checked against NumPy: the edges span
  # [min, max] and each element is counted in exactly one bucket.
  data = DATA[name].astype(np.float64)
  buckets = summaries.histogram_buckets([tf.constant(data)])[0].numpy()
  assert buckets[0, 0] == data.min() and buckets[-1, 1] == data.max()
  assert buckets[:, 2].sum() == data.size
  if name == 'normal':
    edges = np.linspace(data.min(), data.max(), 31)
    np.testing.assert_allclose(buckets[:, 0], edges[:-1], rtol=1e-12)
    expected, _ = np.histogram(data, edges)
    # NumPy and TensorBoard may place an element at an edge either side.
    assert np.abs(buckets[:, 2] - expected).sum() <= 4


def test_empty_data_goes_to_tensorboards_histogram(tmp_path):
  data = {'empty': np.zeros([0, 3], np.float32), 'normal': DATA['normal']}
  _assert_same_events(_write(tmp_path / 'ours', data, ours=True),
                      _write(tmp_path / 'tensorboard', data, ours=False))


def test_a_no_op_writer_writes_and_computes_nothing():
  writer = tf.summary.create_noop_writer()

  @tf.function(autograph=False)
  def write():
    with writer.as_default(step=3):
      summaries.histograms([('activations/normal',
                             tf.constant(DATA['normal']))])

  graph = write.get_concrete_function().graph
  assert not [op for op in graph.get_operations()
              if op.type in ('WriteSummary', 'UnsortedSegmentSum')]


@pytest.mark.parametrize('value', [
    np.maximum(_RNG.normal(0, 1, (16, 7, 7, 32)), 0).astype(np.float32),
    np.zeros([3, 5], np.float32),
    _RNG.normal(0, 1, 1000).astype(np.float32),
    np.array([0.0, 1.0, 0.0], np.float64),
])
def test_zero_fraction_is_tensorflows(value):
  ours = tf.function(summaries.zero_fraction, autograph=False)(value)
  np.testing.assert_array_equal(ours.numpy(),
                                tf.math.zero_fraction(value).numpy())
  assert ours.dtype == tf.float32


def test_a_training_steps_histograms_are_tensorboards(tmp_path, monkeypatch):
  # In the training step's graph, where grappler rewrites more than in a
  # small function: LeNet's step-1 summaries, ours and TensorBoard's.
  from slimkit.deployment import model_deploy
  from slimkit.nets import nets_factory
  from slimkit.training import optimization
  from slimkit.training import trainer

  rng = np.random.RandomState(0)
  images = rng.rand(8, 28, 28, 1).astype(np.float32)
  labels = rng.randint(0, 10, 8)

  def train(train_dir):
    tf.keras.utils.set_random_seed(1)
    trainer.train(
        strategy=model_deploy.make_strategy(model_deploy.DeploymentConfig()),
        network_fn=lambda: nets_factory.get_network_fn('lenet', 10,
                                                       is_training=True),
        dataset_fn=lambda ctx, **_: tf.data.Dataset.from_tensor_slices(
            (images, labels)).repeat().batch(4),
        optimizer_fn=lambda lr: optimization.build_optimizer('sgd', lr),
        learning_rate=0.01,
        options=trainer.TrainOptions(train_dir=str(train_dir), batch_size=4,
                                     max_number_of_steps=1, random_seed=1))
    return {tag: value for tag, value in _events(train_dir).items()
            if value[1] == 'histograms'}

  ours = train(tmp_path / 'ours')
  with monkeypatch.context() as patch:
    patch.setattr(summaries, 'histograms', lambda named: [
        tf.summary.histogram(name, value) for name, value in named])
    reference = train(tmp_path / 'tensorboard')
  assert len(reference) == 17  # 9 end points, 8 variables
  _assert_same_events(ours, reference)
