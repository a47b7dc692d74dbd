"""glibc's allocation thresholds, which TensorFlow's tf.data pins at 128 KiB.

Why this exists: the first time a process builds a `GeneratorDataset` (the
op behind `Dataset.from_generator`, and behind the iterator that
`tf.distribute` builds for every run of our trainer), TensorFlow 2.21 calls
`mallopt(M_MMAP_THRESHOLD, 128 KiB)`, meant against a Python 3.11 leak (its
log line says "M_TRIM_THRESHOLD=128 kb was set"; the parameter it passes is
the mmap threshold). Setting it switches off glibc's dynamic threshold, so
from then on every buffer over 128 KiB is mapped from the kernel when it is
allocated and unmapped when it is freed: oneDNN's per-step buffers (every
weight in the kernels' blocked layout, the reordered inputs) come back as
fresh zero pages each step. ResNet-50 at 112 px and batch 16 took 61 000
page faults and 11% of its CPU time in the kernel per step on a 2-core CPU;
docs/performance.md, note 18. Keras' `fit` on one device builds no
`GeneratorDataset` and never pays this.

`restore_thresholds` sets the thresholds that glibc's dynamic rule ends at
for a program whose transient buffers are large: the mmap threshold at its
ceiling, 32 MiB on 64-bit glibc, and the trim threshold at twice that (the
rule raises both together). Buffers up to 32 MiB are then reused from the
heap: peak RSS of that ResNet-50 run rose by 3%. A user's own
`MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` (or the
`glibc.malloc.*` tunables) win: TensorFlow's call overrode them too, and they
are set again. Where the C library is not glibc, nothing is done.
With parameter servers the workers build their iterators in their own
server processes, which this does not reach.
"""

import ctypes
import os
import platform
from typing import Mapping, Optional, Tuple

# glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where its dynamic threshold
# stops rising, and the largest value mallopt accepts.
MMAP_THRESHOLD = 32 * 1024 * 1024
# The dynamic rule sets the trim threshold to twice the mmap threshold.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

# From glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1

_ENVIRONMENT = (('MALLOC_MMAP_THRESHOLD_', 'glibc.malloc.mmap_threshold'),
                ('MALLOC_TRIM_THRESHOLD_', 'glibc.malloc.trim_threshold'))


def thresholds(environ: Mapping[str, str] = os.environ) -> Tuple[int, int]:
  """The (mmap, trim) thresholds to set: the user's where given, else ours.

  Args:
    environ: the environment to read the user's settings from: glibc's
      `MALLOC_*_` variables and its `GLIBC_TUNABLES` (here a tunable wins
      over a variable).

  Returns:
    (mmap threshold, trim threshold) in bytes.
  """
  tunables = dict(
      item.split('=', 1) for item in environ.get('GLIBC_TUNABLES', '').split(
          ':') if '=' in item)
  chosen = []
  for (variable, tunable), ours in zip(_ENVIRONMENT,
                                       (MMAP_THRESHOLD, TRIM_THRESHOLD)):
    value = tunables.get(tunable, environ.get(variable))
    try:
      # mallopt takes an int.
      chosen.append(min(int(value, 0), _INT_MAX) if value is not None
                    else ours)
    except ValueError:  # glibc ignores a value it cannot read; so do we
      chosen.append(ours)
  return chosen[0], chosen[1]


def _glibc() -> Optional[ctypes.CDLL]:
  if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
    return None
  # The process's own symbols, glibc's among them (`ctypes.util.find_library`
  # would run `ldconfig` in a subprocess to find the same library).
  return ctypes.CDLL(None)


def restore_thresholds(
    environ: Mapping[str, str] = os.environ) -> Optional[Tuple[int, int]]:
  """Sets glibc's mmap and trim thresholds (see the module docstring).

  Call it after the first `GeneratorDataset` of the process was built (for
  the trainer: after its distributed iterator): TensorFlow sets its value
  once per process, at that moment.

  Args:
    environ: where the user's own settings are read (`thresholds`).

  Returns:
    The (mmap, trim) thresholds set, or None where the C library is not
    glibc or refused a value.
  """
  libc = _glibc()
  if libc is None:
    return None
  mmap_threshold, trim_threshold = thresholds(environ)
  # mallopt returns 1 on success, 0 for a value glibc does not accept.
  if (libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold)) != 1 or
      libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(trim_threshold)) != 1):
    return None
  return mmap_threshold, trim_threshold
