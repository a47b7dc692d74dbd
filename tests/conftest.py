"""Shared test setup."""

import os

# One thread per TensorFlow op in every test process and every script they
# start (set before TensorFlow starts; inherited through the environment).
# The suite runs three pytest processes and their scripts on 2 cores, so the
# cores are busy anyway: with TF's default pool per process (a thread per
# core) the processes only preempt each other. The default run took 681 s
# with TF's default and 615 s with one thread, on the same quiet machine.
os.environ.setdefault('TF_NUM_INTRAOP_THREADS', '1')

# Imported after the setting above, so that TensorFlow starts with it.
import http.server  # noqa: E402
import threading  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402

from slimkit.datasets import digits as digits_lib  # noqa: E402
from tests import seeding  # noqa: E402
from tests import shared_data  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
  """Seeds Python, NumPy, TensorFlow and Keras's initializers per test.

  Keras 3 draws its initializers from its own seed generator, which
  `tf.random.set_seed` does not reach: unseeded, a short training run
  occasionally starts from weights that do not learn in its few steps and a
  loss-falls assertion fails by chance. Seeding makes each test repeatable;
  it does not make a test easier, since the thresholds do not depend on it
  (`SLIMKIT_TEST_SEED=N` checks another seed; see seeding.py).
  """
  keras.utils.set_random_seed(seeding.SEED)


@pytest.fixture
def http_server(monkeypatch):
  """Serves `files[path] = bytes` on 127.0.0.1; yields (files, base_url)."""
  for name in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY',
               'all_proxy', 'ALL_PROXY'):
    monkeypatch.delenv(name, raising=False)
  files = {}

  class Handler(http.server.BaseHTTPRequestHandler):

    def do_GET(self):
      body = files.get(self.path)
      if body is None:
        self.send_error(404)
        return
      self.send_response(200)
      self.send_header('Content-Length', str(len(body)))
      self.end_headers()
      self.wfile.write(body)

    def log_message(self, *args):
      pass

  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield files, f'http://127.0.0.1:{server.server_address[1]}'
  finally:
    server.shutdown()
    server.server_close()


@pytest.fixture(scope='session')
def digits_dir(tmp_path_factory):
  """The bundled digits converted once per test run, for tests that read it."""
  return shared_data.build_once(tmp_path_factory, 'digits', digits_lib.run)


@pytest.fixture(scope='session')
def digits_lenet_run(tmp_path_factory, digits_dir):
  """A lenet trained on the digits once per test run (tests/digits_lenet.py)."""
  from tests import digits_lenet  # pylint: disable=g-import-not-at-top
  return digits_lenet.shared_run(tmp_path_factory, digits_dir)
