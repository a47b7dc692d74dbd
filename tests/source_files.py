"""Source files written as their publishers wrote them, for converter tests.

`py2_pickle` pickles as Python 2's cPickle did for CIFAR's python archives.
The `http_server` fixture that serves them on 127.0.0.1 is in conftest.py.
"""

import io
import pickle
import struct


class _Py2Pickler(pickle._Pickler):
  """Pickles as Python 2's cPickle did for CIFAR: str and bytes as BINSTRING."""

  dispatch = pickle._Pickler.dispatch.copy()

  def _save_py2_str(self, obj):
    if isinstance(obj, str):
      obj = obj.encode('latin1')
    if len(obj) < 256:
      self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
    else:
      self.write(pickle.BINSTRING + struct.pack('<i', len(obj)) + obj)
    self.memoize(obj)

  dispatch[bytes] = _save_py2_str
  dispatch[str] = _save_py2_str


def py2_pickle(obj):
  """Returns `obj` pickled like the real CIFAR files (protocol 2, Python 2)."""
  f = io.BytesIO()
  _Py2Pickler(f, protocol=2).dump(obj)
  # NumPy 2 names its module numpy._core; the real files say numpy.core.
  return f.getvalue().replace(b'cnumpy._core.multiarray\n',
                              b'cnumpy.core.multiarray\n')
