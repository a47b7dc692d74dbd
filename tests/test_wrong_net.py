"""A checkpoint of another net is named, not patched over."""

import os
import sys

import pytest

from slimkit import checkpoints
from slimkit.nets import nets_factory
from tests import script_runner
from tests import tf1_checkpoints
from tests import tiny_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_registry_knows_each_scope():
  assert nets_factory.names_with_scope('LeNet') == ['lenet']
  assert nets_factory.names_with_scope('resnet_v1_50') == ['resnet_v1_50']
  assert nets_factory.names_with_scope('MobilenetV1') == [
      'mobilenet_v1', 'mobilenet_v1_025', 'mobilenet_v1_050',
      'mobilenet_v1_075']
  assert nets_factory.names_with_scope('NoSuchNet') == []


@pytest.fixture(scope='module')
def lenet_checkpoint(tmp_path_factory):
  prefix = str(tmp_path_factory.mktemp('ckpt') / 'lenet.ckpt')
  net = tf1_checkpoints.build('lenet', size=28, channels=1)
  tf1_checkpoints.write_tf1_checkpoint(
      prefix, tf1_checkpoints.random_values(net))
  return prefix


def test_the_message_names_the_checkpoints_net(lenet_checkpoint):
  cifarnet = tf1_checkpoints.build('cifarnet', size=32)
  message = checkpoints.other_net_message(cifarnet, lenet_checkpoint)
  assert 'its variables are under LeNet/ (lenet)' in message
  assert 'the net built is CifarNet/' in message
  assert 'Pass --model_name=lenet.' in message
  lenet = tf1_checkpoints.build('lenet', size=28, channels=1)
  assert checkpoints.other_net_message(lenet, lenet_checkpoint) is None


def test_eval_with_the_wrong_net_names_the_right_one(lenet_checkpoint,
                                                     tmp_path):
  data = tiny_records.write_dataset(tmp_path / 'mnist', 'mnist', {'test': 4})
  result = script_runner.run(
      [sys.executable, os.path.join(ROOT, 'eval_image_classifier.py'),
       f'--checkpoint_path={lenet_checkpoint}', '--model_name=cifarnet',
       '--dataset_name=mnist', f'--dataset_dir={data}',
       '--dataset_split_name=test', '--batch_size=2',
       f'--eval_dir={tmp_path / "eval"}'],
      capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert result.returncode != 0
  assert 'Pass --model_name=lenet.' in result.stderr
  assert '--ignore_missing_vars' not in result.stderr
  assert '--checkpoint_exclude_scopes' not in result.stderr
