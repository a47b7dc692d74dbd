"""Processes of a local cluster on 127.0.0.1 for the distributed tests.

Every process is started here with its log in a file, listens on a free
port of 127.0.0.1 only, and is waited for with a timeout; whatever is left
is killed on exit.
"""

import contextlib
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'train_image_classifier.py')
TIMEOUT = 240  # Seconds any one process may run.


def env(**extra):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2', **extra)
  if 'TF_CONFIG' not in extra:
    env.pop('TF_CONFIG', None)
  return env


def free_ports(count):
  """Distinct free ports of 127.0.0.1 (all held open until all are chosen)."""
  with contextlib.ExitStack() as stack:
    ports = []
    for _ in range(count):
      sock = stack.enter_context(socket.socket(socket.AF_INET,
                                               socket.SOCK_STREAM))
      sock.bind(('127.0.0.1', 0))
      ports.append(sock.getsockname()[1])
    return ports


class Processes:
  """Starts processes with logs in files; ends whatever is left on exit."""

  def __init__(self, log_dir):
    self.log_dir = str(log_dir)
    self.procs = {}

  def start(self, name, args, env):
    log = open(os.path.join(self.log_dir, f'{name}.log'), 'w')
    self.procs[name] = (subprocess.Popen(args, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         cwd=ROOT), log)
    return self.procs[name][0]

  def wait(self, name, timeout=TIMEOUT):
    proc = self.procs[name][0]
    try:
      return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      pytest.fail(f'{name} did not finish in {timeout} s:\n{self.log(name)}')

  def log(self, name):
    with open(os.path.join(self.log_dir, f'{name}.log')) as f:
      return f.read()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    for proc, log in self.procs.values():
      if proc.poll() is None:
        proc.kill()
      proc.wait(timeout=30)
      log.close()


def script_args(train_dir, dataset_dir, *extra):
  return [sys.executable, SCRIPT, f'--train_dir={train_dir}',
          f'--dataset_dir={dataset_dir}', '--dataset_name=cifar10',
          '--model_name=cifarnet', '--optimizer=sgd', '--batch_size=8',
          '--save_summaries_secs=600', '--num_readers=1',
          '--num_preprocessing_threads=1', *extra]
