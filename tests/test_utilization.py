"""Training GFLOP/s and utilisation in the log and TensorBoard; the peak cache.

References: LeNet's multiply-adds counted by hand, and TF's own summary
iterator (tests/event_files.py) for what the run wrote.
"""

import json
import logging
import os
import re

import pytest
import tensorflow as tf

from slimkit.deployment import model_deploy
from slimkit.nets import nets_factory
from slimkit.training import optimization
from slimkit.training import peak
from slimkit.training import trainer
from tests import event_files

# LeNet on 28x28x1 by hand: conv1 5x5x1 -> 32 and conv2 5x5x32 -> 64 'SAME'
# on 28x28 and 14x14 outputs, fc3 7*7*64 -> 1024, fc4 1024 -> 10.
LENET_MULTIPLY_ADDS = (28 * 28 * 32 * 25 + 14 * 14 * 64 * 25 * 32 +
                       7 * 7 * 64 * 1024 + 1024 * 10)
LENET_TRAINING_FLOPS = 2 * 3 * LENET_MULTIPLY_ADDS
BATCH = 4
LINE_RE = re.compile(
    r'global step (\d+): loss = \S+ \(\S+ sec/step, ([\d.]+) images/sec, '
    r'([\d.]+) GFLOP/s(?:, (\d+)% of (\d+))?')


def _train(train_dir, **options):
  images = tf.random.stateless_uniform([BATCH, 28, 28, 1], [1, 2], -1, 1)
  labels = tf.constant([0, 1, 2, 3], tf.int64)
  return trainer.train(
      strategy=model_deploy.DeploymentConfig().strategy(),
      network_fn=lambda: nets_factory.get_network_fn('lenet', 10,
                                                     is_training=True),
      dataset_fn=lambda ctx: tf.data.Dataset.from_tensors(
          (images, labels)).repeat(),
      optimizer_fn=lambda lr: optimization.build_optimizer('sgd', lr),
      learning_rate=0.01,
      options=trainer.TrainOptions(
          train_dir=str(train_dir), batch_size=BATCH, max_number_of_steps=6,
          log_every_n_steps=2, save_summaries_secs=10 ** 6, **options))


@pytest.mark.parametrize('peak_gflops', [None, 7.5])
def test_log_and_summaries_show_gflops_and_utilization(tmp_path, caplog,
                                                       peak_gflops):
  caplog.set_level(logging.INFO, logger='absl')
  _train(tmp_path, peak_gflops=peak_gflops)
  rates = event_files.scalars(tmp_path, 'images_per_sec')
  gflops = event_files.scalars(tmp_path, 'gflops_per_sec')
  utilization = event_files.scalars(tmp_path, 'utilization')
  assert sorted(rates) == sorted(gflops) == [2, 4, 6]
  for step, rate in rates.items():
    assert gflops[step] == pytest.approx(rate * LENET_TRAINING_FLOPS / 1e9,
                                         rel=1e-6)
  if peak_gflops is None:
    assert not utilization
  else:
    assert sorted(utilization) == [2, 4, 6]
    for step, value in gflops.items():
      assert utilization[step] == pytest.approx(value / peak_gflops, rel=1e-6)
  lines = [LINE_RE.search(r.getMessage()) for r in caplog.records]
  lines = {int(m.group(1)): m for m in lines if m}
  assert sorted(lines) == [2, 4, 6]
  for step, match in lines.items():
    # The printed values, rounded: GFLOP/s to 0.1, utilisation to 1%.
    assert float(match.group(3)) == pytest.approx(gflops[step], abs=0.051)
    if peak_gflops is None:
      assert match.group(4) is None
    else:
      assert int(match.group(4)) == round(100 * utilization[step])
      assert match.group(5) == '8'  # 7.5, printed to 0 decimals


def test_peak_is_measured_once_then_read_from_the_cache(tmp_path,
                                                        monkeypatch):
  monkeypatch.setenv(peak.CACHE_DIR_ENV, str(tmp_path / 'cache'))
  path = peak.cache_path()
  assert path == str(tmp_path / 'cache' / peak.CACHE_FILE)
  assert peak.resolve_peak('float32') == (None, None)  # nothing measured
  assert not os.path.exists(path)
  measured, source = peak.resolve_peak('float32', measure=True)
  assert measured > 0 and source == f'measured, cached in {path}'
  with open(path) as f:
    written = json.load(f)
  key = peak.machine_key('float32')
  assert list(written) == [key] and key.endswith('float32')
  assert written[key]['gflops'] == round(measured, 1)
  before = os.stat(path).st_mtime_ns
  again, source = peak.resolve_peak('float32', measure=True)
  assert (again, source) == (round(measured, 1), f'cached in {path}')
  assert os.stat(path).st_mtime_ns == before  # not measured, not rewritten
  # Per dtype: bfloat16 has no cached peak yet; a given peak wins.
  assert peak.resolve_peak('mixed_bfloat16') == (None, None)
  assert peak.resolve_peak('float32', given=123.0) == (123.0, 'given')
  assert not [f for f in os.listdir(tmp_path / 'cache') if f.endswith('.tmp')]


def test_a_damaged_cache_counts_as_none(tmp_path, monkeypatch):
  monkeypatch.setenv(peak.CACHE_DIR_ENV, str(tmp_path))
  with open(peak.cache_path(), 'w') as f:
    f.write('{"half a fi')
  assert peak.resolve_peak('float32') == (None, None)
  peak.store_peak('bfloat16', 321.04)
  assert peak.cached_peak('bfloat16') == 321.0


def test_compute_dtypes_and_bad_precision():
  assert [peak.compute_dtype(p) for p in
          ('float32', 'mixed_bfloat16', 'mixed_float16')] == [
              'float32', 'bfloat16', 'float16']
  with pytest.raises(ValueError, match="Unknown precision 'fp8'; valid: "):
    peak.compute_dtype('fp8')
