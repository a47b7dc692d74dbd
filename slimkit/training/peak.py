"""The machine's peak: a matmul measurement, cached per machine and dtype.

Utilisation (model FLOPs utilisation) is a run's achieved GFLOP/s over what
the machine reaches on its best case: a large square matrix product in the
run's compute dtype (float32, bfloat16 under `mixed_bfloat16`, float16 under
`mixed_float16`), timed by TensorFlow on the default device.

  gflops, source = peak.resolve_peak('float32', measure=True)

What this peak does not capture, so that 100% is out of reach by design:
depthwise convolutions, batch norm, activations, pooling and the optimizer
update are memory-bound (they move far more bytes per FLOP than a matmul)
and are not counted as FLOPs at all (`slimkit.flops`); small convolutions
use the matrix units less well than one large product; and the input
pipeline shares the same cores on a CPU. Measured on a loaded machine the
peak is too low, and the utilisation too high: measure on a quiet one, or
give the peak (`--peak_gflops`).

The cache is one small JSON file, `peak_gflops.json`, in `$SLIMKIT_CACHE_DIR`
(else `$XDG_CACHE_HOME/slimkit`, else `~/.cache/slimkit`), keyed by the
processor, the usable cores, the accelerators, TensorFlow's version and the
dtype; it is rewritten atomically (a reader never sees half a file).
"""

import datetime
import json
import os
import platform
import tempfile
import time

from slimkit.training import precision as precision_lib

CACHE_DIR_ENV = 'SLIMKIT_CACHE_DIR'
CACHE_FILE = 'peak_gflops.json'
# The compute dtype of each precision of `precision.PRECISIONS`.
COMPUTE_DTYPES = {'float32': 'float32', 'mixed_bfloat16': 'bfloat16',
                  'mixed_float16': 'float16'}
# A 2048^3 product: 17 GFLOP, large enough that every core's matrix units
# are busy and the call overhead is negligible; 0.1-0.3 s on 2 CPU cores.
MATMUL_SIZE = 2048
MATMUL_REPEATS = 5


def compute_dtype(precision):
  """The dtype the net's convolutions run in under `precision`."""
  return COMPUTE_DTYPES[precision_lib.check_precision(precision)]


def cache_path():
  """Where the measured peaks are kept (see the module docstring)."""
  directory = os.environ.get(CACHE_DIR_ENV) or os.path.join(
      os.environ.get('XDG_CACHE_HOME') or os.path.join(
          os.path.expanduser('~'), '.cache'), 'slimkit')
  return os.path.join(directory, CACHE_FILE)


def _processor():
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine_key(dtype):
  """What a peak is measured for: this machine's devices, TF and `dtype`."""
  import tensorflow as tf

  cores = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
           else os.cpu_count())
  accelerators = [
      tf.config.experimental.get_device_details(d).get('device_name', d.name)
      for d in tf.config.list_physical_devices('GPU')]
  return ' | '.join([_processor(), f'{cores} cores'] + accelerators +
                    [f'TensorFlow {tf.__version__}', dtype])


def measure_matmul_gflops(dtype, size=MATMUL_SIZE, repeats=MATMUL_REPEATS):
  """GFLOP/s of the fastest of `repeats` `size`^3 matrix products.

  Args:
    dtype: 'float32', 'bfloat16' or 'float16'.
    size: The matrices' side.
    repeats: Timed products, after one untimed (first allocations, oneDNN's
      kernel choice).

  Returns:
    2 * size^3 / the fastest product's seconds / 1e9.
  """
  import tensorflow as tf

  a = tf.cast(tf.random.stateless_uniform([size, size], [0, 1]), dtype)
  b = tf.cast(tf.random.stateless_uniform([size, size], [0, 2]), dtype)
  # Summing one element waits for the product (also on a GPU) and moves one
  # number to the host, not the whole matrix.
  wait = lambda: float(tf.linalg.matmul(a, b)[0, 0])
  wait()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    wait()
    best = min(best, time.perf_counter() - start)
  return 2 * size ** 3 / best / 1e9


def read_cache(path=None):
  """The cached `{key: {'gflops': ..., 'measured': ...}}`; {} if none."""
  path = path or cache_path()
  try:
    with open(path) as f:
      cached = json.load(f)
  except (OSError, ValueError):  # absent, unreadable or half-written by hand
    return {}
  return cached if isinstance(cached, dict) else {}


def cached_peak(dtype, path=None):
  """This machine's cached peak GFLOP/s in `dtype`, or None."""
  entry = read_cache(path).get(machine_key(dtype))
  gflops = entry.get('gflops') if isinstance(entry, dict) else None
  if isinstance(gflops, (int, float)) and gflops > 0:
    return float(gflops)
  return None


def store_peak(dtype, gflops, path=None):
  """Caches `gflops` for this machine and `dtype` (atomically)."""
  path = path or cache_path()
  cached = read_cache(path)
  cached[machine_key(dtype)] = {
      'gflops': round(float(gflops), 1),
      'measured': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'matmul': f'{MATMUL_SIZE}x{MATMUL_SIZE}, best of {MATMUL_REPEATS}'}
  directory = os.path.dirname(path)
  os.makedirs(directory, exist_ok=True)
  handle, temporary = tempfile.mkstemp(dir=directory, prefix=CACHE_FILE,
                                       suffix='.tmp')
  try:
    with os.fdopen(handle, 'w') as f:
      json.dump(cached, f, indent=1, sort_keys=True)
    os.replace(temporary, path)
  except BaseException:
    os.unlink(temporary)
    raise


def resolve_peak(precision, given=None, measure=False, path=None):
  """The peak GFLOP/s a run's utilisation is measured against.

  Args:
    precision: The run's precision (`precision.PRECISIONS`).
    given: A peak the user gave (`--peak_gflops`); it wins.
    measure: Measure (and cache) the peak when none is cached.
    path: The cache file; default `cache_path()`.

  Returns:
    `(gflops, source)`: the peak and where it came from ('given', 'cached in
    <path>', 'measured, cached in <path>'), or `(None, None)` when no peak
    is known (nothing given or cached, and `measure` False).
  """
  if given:
    return float(given), 'given'
  dtype = compute_dtype(precision)
  path = path or cache_path()
  gflops = cached_peak(dtype, path)
  if gflops is not None:
    return gflops, f'cached in {path}'
  if not measure:
    return None, None
  gflops = measure_matmul_gflops(dtype)
  try:
    store_peak(dtype, gflops, path)
  except OSError as e:  # a read-only home still trains, measured each time
    return gflops, f'measured, not cached ({e})'
  return gflops, f'measured, cached in {path}'


def describe(gflops, source, precision):
  """One log line about the peak in force."""
  if gflops is None:
    return ('Utilisation not shown: no peak known for this machine in '
            f'{compute_dtype(precision)}; --measure_peak measures one (about '
            'a second, cached) or --peak_gflops gives it.')
  return (f'Peak {gflops:.0f} GFLOP/s in {compute_dtype(precision)} '
          f'({source}); utilisation = training GFLOP/s / peak.')
