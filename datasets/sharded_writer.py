"""A parallel, resumable writer of sharded TFRecord files.

Every image converter (ImageNet, flowers, a custom photo folder) describes its
output as a list of `Shard`s, each a final file name and the items that go in
it, plus an `encode_fn` that turns one item into a serialized record.
`write_shards` does the rest:

- Worker processes each write whole shards (`num_workers`, default the number
  of cores). A shard is written under a hidden temporary name and renamed when
  complete (`dataset_utils.atomic_output`), so a file under a final name is
  always whole.
- Beside each finished shard lies a small hidden manifest
  (`.<shard>.manifest.json`): the fingerprint of the items that went in, the
  record count, and the files skipped or converted. A rerun skips every shard
  whose file and matching manifest exist, so an interrupted conversion of
  1.3 million images resumes where it stopped; a shard whose inputs changed
  is rewritten.
- An item whose image cannot be used raises `SkipItem(source, reason)` from
  `encode_fn`; it is counted, listed in the log at the end and in the report
  (`write_report`), never dropped silently. Any other exception stops the
  conversion.
- One progress line every few seconds on stderr: images done of total,
  images per second, time left.

Processes are started with 'spawn' (each worker imports TensorFlow afresh;
forking a process that already runs TensorFlow is unsafe), so `encode_fn` and
the items must be picklable: a module-level function, or a `functools.partial`
of one, and plain data.

Typical use:

  shards = sharded_writer.plan_shards(items, 1024,
                                      os.path.join(out, 'train-%05d-of-%05d'))
  report = sharded_writer.write_shards(shards, encode_fn, num_workers=8,
                                       description='train')
"""

from concurrent import futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import sys
import time
from typing import Optional, Tuple

import tensorflow as tf

from slimkit.datasets import dataset_utils

REPORT_JSON = 'conversion_report.json'
REPORT_TEXT = 'skipped_files.txt'

# Bumped when the meaning of a manifest changes, so old ones are not trusted.
_MANIFEST_VERSION = 1


class SkipItem(Exception):  # noqa: N818 - a signal, not an error; public.
  """Raised by an `encode_fn` for an item to leave out and report.

  Attributes:
    source: What was skipped, usually the image path.
    reason: Why, in a few words.
  """

  def __init__(self, source, reason):
    super().__init__(f'{source}: {reason}')
    self.source = str(source)
    self.reason = str(reason)


@dataclasses.dataclass(frozen=True)
class Encoded:
  """What an `encode_fn` returns for one item.

  Attributes:
    record: The serialized `tf.train.Example`.
    source: The item's origin (image path), for the report.
    converted_from: None if the image was used as it was, else what it was
      converted from ('cmyk jpeg', 'png', ...).
  """
  record: bytes
  source: str
  converted_from: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Shard:
  """One output file and the items written into it, in order.

  Attributes:
    path: The final file name.
    items: Picklable items, each passed to `encode_fn`.
  """
  path: str
  items: Tuple

  def fingerprint(self):
    """Returns a digest of the items; a finished shard is kept only if equal."""
    return hashlib.sha256(repr(tuple(self.items)).encode('utf-8')).hexdigest()


@dataclasses.dataclass(frozen=True)
class ShardResult:
  """What happened to one shard.

  Attributes:
    path: The shard's file.
    num_records: Records in the file.
    skipped: `(source, reason)` of every item left out.
    converted: `(source, converted_from)` of every re-encoded image.
    resumed: True if the shard was finished by an earlier run and kept.
  """
  path: str
  num_records: int
  skipped: Tuple[Tuple[str, str], ...] = ()
  converted: Tuple[Tuple[str, str], ...] = ()
  resumed: bool = False


@dataclasses.dataclass(frozen=True)
class Report:
  """The outcome of `write_shards`.

  Attributes:
    description: The name given to `write_shards` ('train').
    shards: One `ShardResult` per shard, in the order of the shards given.
    seconds: Wall time of the call.
  """
  description: str
  shards: Tuple[ShardResult, ...]
  seconds: float

  @property
  def num_records(self):
    return sum(s.num_records for s in self.shards)

  @property
  def skipped(self):
    return [entry for s in self.shards for entry in s.skipped]

  @property
  def converted(self):
    return [entry for s in self.shards for entry in s.converted]

  @property
  def resumed_shards(self):
    return [s.path for s in self.shards if s.resumed]

  def to_dict(self):
    return {
        'num_records': self.num_records,
        'num_shards': len(self.shards),
        'resumed_shards': len(self.resumed_shards),
        'seconds': round(self.seconds, 3),
        'skipped': [{'source': s, 'reason': r} for s, r in self.skipped],
        'converted': [{'source': s, 'from': f} for s, f in self.converted],
    }


def default_num_workers():
  """Returns the number of cores this process may use."""
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:  # Not on Linux.
    return max(1, os.cpu_count() or 1)


def plan_shards(items, num_shards, path_format):
  """Splits `items` into `num_shards` contiguous shards of near-equal size.

  Args:
    items: The items, in the order they should be written.
    num_shards: How many files to write; shards may be empty when there are
      fewer items than shards.
    path_format: A %-format of the shard index and count, e.g.
      '/out/train-%05d-of-%05d'.

  Returns:
    A list of `Shard`s.

  Raises:
    ValueError: if `num_shards` is not positive.
  """
  if num_shards < 1:
    raise ValueError(f'num_shards must be at least 1, got {num_shards}.')
  items = tuple(items)
  shards = []
  for index in range(num_shards):
    start = index * len(items) // num_shards
    end = (index + 1) * len(items) // num_shards
    shards.append(Shard(path_format % (index, num_shards), items[start:end]))
  return shards


def _manifest_path(shard_path):
  directory, name = os.path.split(os.path.abspath(shard_path))
  return os.path.join(directory, f'.{name}.manifest.json')


def _finished(shard):
  """Returns the `ShardResult` of a shard an earlier run completed, or None."""
  if not os.path.isfile(shard.path):
    return None
  try:
    with open(_manifest_path(shard.path), encoding='utf-8') as f:
      manifest = json.load(f)
  except (OSError, ValueError):
    return None
  if (manifest.get('version') != _MANIFEST_VERSION or
      manifest.get('fingerprint') != shard.fingerprint() or
      manifest.get('size') != os.path.getsize(shard.path)):
    return None
  return ShardResult(
      path=shard.path,
      num_records=int(manifest['num_records']),
      skipped=tuple(tuple(x) for x in manifest['skipped']),
      converted=tuple(tuple(x) for x in manifest['converted']),
      resumed=True)


def _write_json(path, obj):
  with dataset_utils.atomic_output(path) as tmp_path:
    with open(tmp_path, 'w', encoding='utf-8') as f:
      json.dump(obj, f, indent=1)


def _write_shard(shard, encode_fn, tick):
  """Writes one shard and its manifest; `tick()` is called after each item."""
  num_records = 0
  skipped, converted = [], []
  # A stale file under the final name (other inputs) goes first, so that it
  # can never be paired with the new manifest if this run dies before the
  # rename.
  if os.path.exists(shard.path):
    os.remove(shard.path)
  with dataset_utils.atomic_output(shard.path) as tmp_path:
    with tf.io.TFRecordWriter(tmp_path) as writer:
      for item in shard.items:
        try:
          encoded = encode_fn(item)
        except SkipItem as e:
          skipped.append((e.source, e.reason))
        else:
          writer.write(encoded.record)
          num_records += 1
          if encoded.converted_from:
            converted.append((encoded.source, encoded.converted_from))
        tick()
    # The manifest is complete before the shard gets its final name: a file
    # under its final name with a matching manifest is always finished.
    _write_json(_manifest_path(shard.path), {
        'version': _MANIFEST_VERSION,
        'shard': os.path.basename(shard.path),
        'fingerprint': shard.fingerprint(),
        'num_records': num_records,
        'size': os.path.getsize(tmp_path),
        'skipped': skipped,
        'converted': converted,
    })
  return ShardResult(shard.path, num_records, tuple(skipped), tuple(converted))


# Set in each worker process by _init_worker.
_worker_counter = None


def _init_worker(counter):
  global _worker_counter  # noqa: PLW0603 - per-process, set by the pool.
  _worker_counter = counter
  # One thread per worker: the parallelism is across processes, and TF's own
  # pools in every worker would oversubscribe the cores.
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)


def _tick_shared():
  with _worker_counter.get_lock():
    _worker_counter.value += 1


def _write_shard_in_worker(shard, encode_fn):
  return _write_shard(shard, encode_fn, _tick_shared)


class WorkerPool:
  """Worker processes shared by several `write_shards` calls (the splits).

  Starting a worker costs seconds (each imports TensorFlow), so a converter
  opens one pool for all its splits. The processes start on first use; with
  one worker everything runs in the calling process.

  Typical use:

    with sharded_writer.WorkerPool(num_workers) as pool:
      for name, shards in splits:
        write_shards(shards, encode_fn, pool=pool, description=name)
  """

  def __init__(self, num_workers=None):
    """Creates the pool.

    Args:
      num_workers: Worker processes; None means the number of cores.

    Raises:
      ValueError: for a non-positive `num_workers`.
    """
    if num_workers is None:
      num_workers = default_num_workers()
    if num_workers < 1:
      raise ValueError(f'num_workers must be at least 1, got {num_workers}.')
    self.num_workers = num_workers
    self._executor = None
    self._counter = None

  def executor(self):
    """Returns the process pool, starting it on first call."""
    if self._executor is None:
      context = multiprocessing.get_context('spawn')
      self._counter = context.Value('q', 0)
      # concurrent.futures, unlike multiprocessing.Pool, fails with
      # BrokenProcessPool when a worker dies instead of waiting forever.
      self._executor = futures.ProcessPoolExecutor(
          self.num_workers, mp_context=context, initializer=_init_worker,
          initargs=(self._counter,))
    return self._executor

  def images_done(self):
    """Returns how many items the workers have processed so far."""
    return self._counter.value if self._counter is not None else 0

  def close(self):
    if self._executor is not None:
      self._executor.shutdown(wait=True, cancel_futures=True)
      self._executor = None

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


def _format_duration(seconds):
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}:{rest // 60:02d}:{rest % 60:02d}'


class _Progress:
  """Prints 'done/total images, rate, time left' at most every `every` s."""

  def __init__(self, description, total, num_shards, log, every):
    self._description = description
    self._total = total
    self._num_shards = num_shards
    self._log = log
    self._every = every
    self._start = time.monotonic()
    self._last = self._start

  def update(self, done, shards_done, force=False):
    now = time.monotonic()
    if not force and now - self._last < self._every:
      return
    self._last = now
    rate = done / max(now - self._start, 1e-9)
    left = (f'{_format_duration((self._total - done) / rate)} left'
            if rate > 0 else 'time left unknown')
    print(f'[{self._description}] {done}/{self._total} images, '
          f'{rate:.1f} images/s, {left} '
          f'({shards_done}/{self._num_shards} shards)',
          file=self._log, flush=True)


def write_shards(shards, encode_fn, num_workers=None, description='images',
                 log=sys.stderr, progress_every_secs=5.0, pool=None):
  """Writes `shards` in parallel, skipping those an earlier run finished.

  Args:
    shards: The `Shard`s to write (see `plan_shards`).
    encode_fn: Picklable callable from one item to an `Encoded`; raises
      `SkipItem` for an item to leave out.
    num_workers: Worker processes when no `pool` is given; None means the
      number of cores. With 1 (or one shard to write) everything runs in this
      process.
    description: Name of the output in log lines ('train').
    log: Stream for progress and the final summary.
    progress_every_secs: Seconds between progress lines.
    pool: A `WorkerPool` to run in (then `num_workers` is ignored).

  Returns:
    A `Report`.

  Raises:
    ValueError: for a non-positive `num_workers` or two shards with one path.
  """
  start = time.monotonic()
  if pool is None:
    with WorkerPool(num_workers) as own_pool:
      return write_shards(shards, encode_fn, description=description, log=log,
                          progress_every_secs=progress_every_secs,
                          pool=own_pool)
  paths = [os.path.abspath(s.path) for s in shards]
  if len(set(paths)) != len(paths):
    raise ValueError(f'Two shards of {description!r} share a file name.')

  results = [_finished(s) for s in shards]
  todo = [i for i, r in enumerate(results) if r is None]
  if len(todo) < len(shards):
    print(f'[{description}] {len(shards) - len(todo)} of {len(shards)} shards '
          f'were finished by an earlier run; keeping them.', file=log,
          flush=True)
  total = sum(len(shards[i].items) for i in todo)
  progress = _Progress(description, total, len(shards), log,
                       progress_every_secs)
  shards_done = len(shards) - len(todo)

  if pool.num_workers == 1 or len(todo) == 1:
    done = 0

    def tick():
      nonlocal done
      done += 1
      progress.update(done, shards_done)

    for i in todo:
      results[i] = _write_shard(shards[i], encode_fn, tick)
      shards_done += 1
  elif todo:
    executor = pool.executor()
    done_before = pool.images_done()
    pending = {executor.submit(_write_shard_in_worker, shards[i], encode_fn): i
               for i in todo}
    try:
      while pending:
        finished, _ = futures.wait(
            pending, timeout=min(1.0, progress_every_secs),
            return_when=futures.FIRST_COMPLETED)
        for job in finished:
          results[pending.pop(job)] = job.result()  # Re-raises its error.
          shards_done += 1
        progress.update(pool.images_done() - done_before, shards_done)
    except BaseException:
      for job in pending:
        job.cancel()
      raise
  if todo:
    progress.update(total, shards_done, force=True)

  report = Report(description, tuple(results), time.monotonic() - start)
  _log_summary(report, log)
  return report


def _log_summary(report, log):
  resumed = len(report.resumed_shards)
  print(f'[{report.description}] {report.num_records} records in '
        f'{len(report.shards)} shards'
        + (f' ({resumed} kept from an earlier run)' if resumed else '')
        + f', {len(report.converted)} images re-encoded, '
        f'{len(report.skipped)} skipped.', file=log, flush=True)
  for source, reason in report.skipped:
    print(f'[{report.description}] SKIPPED {source}: {reason}', file=log,
          flush=True)


def remove_stale_shards(shards, path_format, log=sys.stderr):
  """Deletes shards of an earlier conversion with another shard count.

  After converting with 8 shards where an earlier run wrote 16, the old
  `train-000NN-of-00016` files would still match the split's glob and be read
  twice. Files named like `path_format` but not in `shards` are deleted if
  this writer made them (they have a manifest); others are only reported.

  Args:
    shards: The shards of this conversion.
    path_format: The %-format they were planned with (see `plan_shards`).
    log: Stream for what was deleted or left alone.

  Returns:
    The list of deleted paths.
  """
  directory, name_format = os.path.split(os.path.abspath(path_format))
  pattern = re.compile(
      '^' + re.escape(name_format).replace('%05d', r'\d{5}') + '$')
  keep = {os.path.basename(s.path) for s in shards}
  removed = []
  for name in sorted(os.listdir(directory)):
    if not pattern.match(name) or name in keep:
      continue
    path = os.path.join(directory, name)
    manifest = _manifest_path(path)
    if os.path.exists(manifest):
      os.remove(path)
      os.remove(manifest)
      removed.append(path)
    else:
      print(f'WARNING: {path} is not part of this conversion but matches its '
            f'file names; delete it, or readers will read it too.', file=log)
  if removed:
    print(f'Deleted {len(removed)} shards of an earlier conversion with '
          f'another shard count (e.g. {removed[0]}).', file=log)
  return removed


def write_report(directory, reports, json_name=REPORT_JSON,
                 text_name=REPORT_TEXT):
  """Writes the reports of a conversion into `directory`.

  `conversion_report.json` holds, per split, the record and shard counts and
  every skipped and re-encoded file; `skipped_files.txt` lists the skipped
  files, one `split<TAB>path<TAB>reason` a line (empty when none were).

  Args:
    directory: The output directory of the conversion.
    reports: A dict from split name to the `Report` of `write_shards`.
    json_name: File name of the JSON report.
    text_name: File name of the list of skipped files.

  Returns:
    The paths of the two files written.
  """
  json_path = os.path.join(directory, json_name)
  _write_json(json_path, {name: r.to_dict() for name, r in reports.items()})
  text_path = os.path.join(directory, text_name)
  with dataset_utils.atomic_output(text_path) as tmp_path:
    with open(tmp_path, 'w', encoding='utf-8') as f:
      for name, r in reports.items():
        for source, reason in r.skipped:
          f.write(f'{name}\t{source}\t{reason}\n')
  return json_path, text_path
