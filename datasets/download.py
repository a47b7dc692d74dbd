"""Safe downloads, archive extraction and unpickling for the dataset converters.

- `download`: streams a URL to a temporary file with a progress bar on stderr,
  verifies its checksum, and only then gives it its final name. A mismatch
  deletes the file and raises `ChecksumError`.
- `obtain`: the converters' offline-first entry point: a user-supplied archive
  (`--archive_path`) or one already in the dataset directory is used without
  touching the network; only a missing file is downloaded.
- `safe_extract`: extracts tar (plain, gz, bz2, xz) and zip archives, refusing
  members that would land outside the destination (absolute paths, `..`,
  links pointing outside) and device files, before anything is written.
- `safe_load_pickle`: a restricted unpickler that builds only the numpy arrays,
  lists, dicts, strings and numbers of CIFAR's python archives, so a malicious
  pickle raises instead of running code.

`KNOWN_SHA256` holds the checksums of the official archives.
"""

import codecs
import collections
import contextlib
import gzip
import hashlib
import http.client
import os
import pickle
import shutil
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
import zlib

from absl import logging
import numpy as np

# SHA-256 of the official files, by file name. Sources: CIFAR-10 and CIFAR-100
# from Keras' `cifar10.load_data` and `cifar100.load_data` (md5s
# c58f30108f718f92721af3b95e74349a and eb9058c3a382ffc7106e4002c42a8d85 per the
# CIFAR page),
# MNIST from the CVDF mirror as recorded by TFDS and torchvision users,
# flowers from TFDS's url_checksums/tf_flowers.txt.
KNOWN_SHA256 = {
    'cifar-10-python.tar.gz':
        '6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce',
    'cifar-100-python.tar.gz':
        '85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7',
    'train-images-idx3-ubyte.gz':
        '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',
    'train-labels-idx1-ubyte.gz':
        '3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c',
    't10k-images-idx3-ubyte.gz':
        '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
    't10k-labels-idx1-ubyte.gz':
        'f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',
    'flower_photos.tgz':
        '4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c',
}

# MD5s published next to the archives (the CIFAR page lists only an md5).
KNOWN_MD5 = {
    'cifar-10-python.tar.gz': 'c58f30108f718f92721af3b95e74349a',
    'cifar-100-python.tar.gz': 'eb9058c3a382ffc7106e4002c42a8d85',
}


class ChecksumError(ValueError):
  """A downloaded file does not have the expected checksum."""


class DownloadError(OSError):
  """A download failed (network or HTTP error)."""


class UnsafeArchiveError(ValueError):
  """An archive member would land outside the destination, or is a device."""


class CorruptArchiveError(ValueError):
  """An archive is truncated, corrupt, or not an archive."""


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle asks for a callable outside the restricted allowlist."""


# ---------------------------------------------------------------- checksums


def file_digest(path, algorithm='sha256', chunk_size=1 << 20):
  """Returns the hex digest of the file at `path`."""
  digest = hashlib.new(algorithm)
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(chunk_size), b''):
      digest.update(chunk)
  return digest.hexdigest()


def known_checksum_matches(path, name=None):
  """Checks a file against `KNOWN_SHA256` / `KNOWN_MD5`.

  Args:
    path: The file.
    name: The official file name to look up; defaults to `path`'s base name.

  Returns:
    True if the file's digest equals the known one; False if it differs or no
    checksum of `name` is known.
  """
  name = name or os.path.basename(path)
  if name in KNOWN_SHA256:
    return file_digest(path, 'sha256') == KNOWN_SHA256[name]
  if name in KNOWN_MD5:
    return file_digest(path, 'md5') == KNOWN_MD5[name]
  return False


# ---------------------------------------------------------------- downloads


class _Progress:
  """A throttled one-line progress bar: bytes, percent and rate."""

  def __init__(self, label, total, stream=None, interval=0.25):
    self._label = label
    self._total = total
    self._stream = stream if stream is not None else sys.stderr
    self._interval = interval
    self._start = time.monotonic()
    self._last = 0.0
    self._done = 0

  @staticmethod
  def _mb(n):
    return f'{n / 1e6:.1f} MB'

  def update(self, nbytes, final=False):
    self._done += nbytes
    now = time.monotonic()
    if not final and now - self._last < self._interval:
      return
    self._last = now
    rate = self._done / max(now - self._start, 1e-6)
    if self._total:
      amount = (f'{self._mb(self._done)} / {self._mb(self._total)} '
                f'({100.0 * self._done / self._total:5.1f}%)')
    else:
      amount = self._mb(self._done)
    self._stream.write(f'\r>> {self._label}: {amount}  {self._mb(rate)}/s')
    if final:
      self._stream.write('\n')
    self._stream.flush()


def download(url, dest_path, sha256=None, md5=None, progress=True, timeout=60,
             chunk_size=1 << 20):
  """Downloads `url` to `dest_path`, verifying its checksum.

  The data streams to a hidden temporary file beside `dest_path`; only a
  complete download with the expected checksum is renamed to `dest_path`.

  Args:
    url: What to download (http, https or file URL).
    dest_path: Where the file goes; its directory is created if needed.
    sha256: Expected hex SHA-256, or None to skip that check.
    md5: Expected hex MD5, or None to skip that check.
    progress: Whether to draw a progress bar on stderr.
    timeout: Socket timeout in seconds.
    chunk_size: Bytes read at a time.

  Returns:
    `dest_path`.

  Raises:
    DownloadError: naming the URL, when the server or network fails.
    ChecksumError: naming the URL and both digests; nothing is left on disk.
  """
  directory = os.path.dirname(os.path.abspath(dest_path))
  os.makedirs(directory, exist_ok=True)
  name = os.path.basename(dest_path)
  tmp_path = os.path.join(directory,
                          f'.{name}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}')
  hashes = {'sha256': hashlib.sha256(), 'md5': hashlib.md5()}
  request = urllib.request.Request(url, headers={'User-Agent': 'slimkit'})
  try:
    try:
      with contextlib.closing(urllib.request.urlopen(
          request, timeout=timeout)) as response, open(tmp_path, 'wb') as out:
        total = int(response.headers.get('Content-Length') or 0)
        bar = _Progress(f'Downloading {name}', total) if progress else None
        while True:
          chunk = response.read(chunk_size)
          if not chunk:
            break
          out.write(chunk)
          for digest in hashes.values():
            digest.update(chunk)
          if bar:
            bar.update(len(chunk))
        if bar:
          bar.update(0, final=True)
        if total and out.tell() != total:
          raise DownloadError(
              f'Download of {url} ended after {out.tell()} of {total} bytes.')
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
      if isinstance(e, DownloadError):
        raise
      raise DownloadError(
          f'Could not download {url}: {e}. To work offline, put the file at '
          f'{dest_path} or pass it with --archive_path.') from e
    for algorithm, expected in (('sha256', sha256), ('md5', md5)):
      actual = hashes[algorithm].hexdigest()
      if expected and actual != expected.lower():
        raise ChecksumError(
            f'{algorithm} of the download of {url} is {actual}, expected '
            f'{expected}; the file was deleted.')
    os.replace(tmp_path, dest_path)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp_path)
  logging.info('Downloaded %s (%d bytes).', dest_path,
               os.path.getsize(dest_path))
  return dest_path


Source = collections.namedtuple('Source', ['path', 'downloaded', 'verified'])
Source.__doc__ = """Where a converter's input file came from.

Attributes:
  path: The local file.
  downloaded: Whether this run downloaded it (so may delete it when done).
  verified: Whether its checksum equals the known one of the official file.
"""


def obtain(filename, dataset_dir, url, archive_path=None, sha256=None,
           progress=True):
  """Finds a converter's input file locally, or downloads it.

  Order: `archive_path` when given (the network is never touched); else
  `dataset_dir/filename` when it exists; else a download of `url` to
  `dataset_dir/filename` that must match `sha256`. A local file whose checksum
  is not the known one is accepted with a warning; the converter then checks
  its structure.

  Args:
    filename: The official file name (`cifar-10-python.tar.gz`).
    dataset_dir: The dataset directory.
    url: Where to download the file from.
    archive_path: A user-supplied copy of the file, or None.
    sha256: The expected SHA-256 of a download; defaults to
      `KNOWN_SHA256[filename]`.
    progress: Whether to draw a progress bar while downloading.

  Returns:
    A `Source`.

  Raises:
    FileNotFoundError: if `archive_path` is given but does not exist.
    DownloadError, ChecksumError: see `download`.
  """
  if sha256 is None:
    sha256 = KNOWN_SHA256.get(filename)
  local = archive_path or os.path.join(dataset_dir, filename)
  if archive_path and not os.path.isfile(archive_path):
    raise FileNotFoundError(
        f'--archive_path={archive_path!r} is not a file (expected '
        f'{filename}).')
  if os.path.isfile(local):
    verified = known_checksum_matches(local, filename)
    if verified:
      logging.info('Using %s (checksum verified); no download.', local)
    else:
      logging.warning(
          '%s does not have the known checksum of the official %s; checking '
          'its structure and converting it anyway.', local, filename)
    return Source(local, downloaded=False, verified=verified)
  md5 = None if sha256 else KNOWN_MD5.get(filename)
  download(url, local, sha256=sha256, md5=md5, progress=progress)
  # Verified means "is the official file", not "matched the caller's checksum".
  official = (sha256 and sha256 == KNOWN_SHA256.get(filename)) or (
      md5 and md5 == KNOWN_MD5.get(filename))
  return Source(local, downloaded=True, verified=bool(official))


# ---------------------------------------------------------------- extraction


def _inside(path, root):
  return os.path.commonpath([path, root]) == root


def _member_path(dest_root, name, archive_path):
  """Returns where `name` lands under `dest_root`, refusing escapes."""
  normalized = name.replace('\\', '/')
  if (normalized.startswith('/') or os.path.isabs(name) or
      (len(normalized) > 1 and normalized[1] == ':')):
    raise UnsafeArchiveError(
        f'{archive_path}: member {name!r} has an absolute path; refusing to '
        'extract.')
  if '..' in normalized.split('/'):
    raise UnsafeArchiveError(
        f'{archive_path}: member {name!r} contains "..", which would escape '
        'the destination; refusing to extract.')
  target = os.path.realpath(os.path.join(dest_root, normalized))
  if not _inside(target, dest_root):
    raise UnsafeArchiveError(
        f'{archive_path}: member {name!r} would be written to {target}, '
        f'outside {dest_root}; refusing to extract.')
  return os.path.join(dest_root, normalized)


def _check_tar_member(member, dest_root, archive_path):
  target = _member_path(dest_root, member.name, archive_path)
  if member.isdev():
    raise UnsafeArchiveError(
        f'{archive_path}: member {member.name!r} is a device or FIFO; '
        'refusing to extract.')
  if member.issym() or member.islnk():
    link = member.linkname.replace('\\', '/')
    if link.startswith('/') or os.path.isabs(member.linkname):
      raise UnsafeArchiveError(
          f'{archive_path}: link {member.name!r} points to the absolute path '
          f'{member.linkname!r}; refusing to extract.')
    # Symlinks resolve from their own folder, hard links from the archive root.
    base = os.path.dirname(target) if member.issym() else dest_root
    resolved = os.path.realpath(os.path.join(base, link))
    if not _inside(resolved, dest_root):
      raise UnsafeArchiveError(
          f'{archive_path}: link {member.name!r} -> {member.linkname!r} points '
          f'outside {dest_root}; refusing to extract.')
  return target


def _check_zip_member(info, dest_root, archive_path):
  target = _member_path(dest_root, info.filename, archive_path)
  mode = info.external_attr >> 16
  if stat.S_ISLNK(mode):
    raise UnsafeArchiveError(
        f'{archive_path}: member {info.filename!r} is a symbolic link; '
        'refusing to extract.')
  if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
    raise UnsafeArchiveError(
        f'{archive_path}: member {info.filename!r} is a device or FIFO; '
        'refusing to extract.')
  return target


_FILTER_ERRORS = ((tarfile.FilterError,) if hasattr(tarfile, 'FilterError')
                  else ())
_CORRUPT_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error,
                   gzip.BadGzipFile)


def _remove_created(paths, existed_before):
  """Removes what a failed extraction wrote, deepest first."""
  for path in sorted(paths, key=len, reverse=True):
    if path in existed_before:
      continue
    with contextlib.suppress(OSError):
      if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
      else:
        os.remove(path)


def safe_extract(archive_path, dest_dir):
  """Extracts a tar (plain, .gz, .bz2, .xz) or zip archive safely.

  Every member is checked before anything is written: absolute paths, `..`
  components, symbolic or hard links pointing outside `dest_dir`, and device
  or FIFO members are refused (zip symlinks are refused outright). Tar archives
  are additionally extracted with Python's 'data' filter when available. If
  extraction fails midway (a truncated archive), what it wrote is removed.

  Args:
    archive_path: The archive file.
    dest_dir: Where to extract; created if needed.

  Returns:
    The sorted list of extracted paths (files, folders and links).

  Raises:
    UnsafeArchiveError: naming the archive and the offending member.
    CorruptArchiveError: naming the archive, when it is truncated, corrupt or
      neither tar nor zip.
  """
  os.makedirs(dest_dir, exist_ok=True)
  dest_root = os.path.realpath(dest_dir)
  created = set()
  existed = set()

  def note(target):
    # Record the member and each folder it creates, for cleanup on failure.
    path = target
    while path != dest_root and path not in created and _inside(
        path, dest_root):
      if os.path.lexists(path):
        existed.add(path)
      created.add(path)
      path = os.path.dirname(path)

  try:
    # Tar first: an uncompressed tar whose last member is a zip file can look
    # like a zip to is_zipfile, which reads only the end of the file.
    if not tarfile.is_tarfile(archive_path) and zipfile.is_zipfile(
        archive_path):
      with zipfile.ZipFile(archive_path) as zf:
        infos = zf.infolist()
        targets = [_check_zip_member(i, dest_root, archive_path) for i in infos]
        for info, target in zip(infos, targets):
          note(target)
          zf.extract(info, dest_root)
    else:
      try:
        tar = tarfile.open(archive_path, mode='r:*')
      except tarfile.ReadError as e:
        raise CorruptArchiveError(
            f'{archive_path} is not a readable tar or zip archive ({e}).'
        ) from e
      with tar:
        # Reading every header first also detects most truncations before
        # anything is written.
        members = tar.getmembers()
        targets = [_check_tar_member(m, dest_root, archive_path)
                   for m in members]
        for target in targets:
          note(target)
        kwargs = ({'filter': 'data'} if hasattr(tarfile, 'data_filter')
                  else {})
        tar.extractall(dest_root, members=members, **kwargs)
  except _FILTER_ERRORS as e:
    # Python's own 'data' filter found what our checks let through.
    _remove_created(created, existed)
    raise UnsafeArchiveError(
        f'{archive_path}: {e}; refusing to extract.') from e
  except _CORRUPT_ERRORS as e:
    _remove_created(created, existed)
    raise CorruptArchiveError(
        f'{archive_path} is truncated or corrupt ({type(e).__name__}: {e}); '
        'nothing was kept from it. Delete it and download it again.') from e
  except BaseException:
    _remove_created(created, existed)
    raise
  return sorted(created)


# ---------------------------------------------------------------- unpickling


def _latin1_encode(text, encoding='utf-8', errors='strict'):
  # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(str,
  # 'latin1'); no other codec is needed, so no other is allowed.
  if codecs.lookup(encoding).name != 'iso8859-1':
    raise UnsafePickleError(
        f'Refusing _codecs.encode with encoding {encoding!r} (only latin1 is '
        'allowed).')
  return codecs.encode(text, 'latin1', errors)


def _allowed_globals():
  sample = np.zeros(1, np.uint8)
  reconstruct = sample.__reduce__()[0]
  frombuffer = sample.__reduce_ex__(5)[0]
  allowed = {}
  for core in ('numpy.core', 'numpy._core'):
    allowed[(f'{core}.multiarray', '_reconstruct')] = reconstruct
    allowed[(f'{core}.numeric', '_frombuffer')] = frombuffer
  allowed[('numpy', 'ndarray')] = np.ndarray
  allowed[('numpy', 'dtype')] = np.dtype
  allowed[('_codecs', 'encode')] = _latin1_encode
  for builtins_name in ('builtins', '__builtin__'):
    for type_ in (list, dict, str, bytes, int, float):
      allowed[(builtins_name, type_.__name__)] = type_
  return allowed


class _RestrictedUnpickler(pickle.Unpickler):
  """Admits only the globals of `_allowed_globals()`."""

  _ALLOWED = None

  def find_class(self, module, name):
    if _RestrictedUnpickler._ALLOWED is None:
      _RestrictedUnpickler._ALLOWED = _allowed_globals()
    try:
      return self._ALLOWED[(module, name)]
    except KeyError:
      raise UnsafePickleError(
          f'Refusing to unpickle {module}.{name}: only numpy arrays, dtypes, '
          'lists, dicts, strings, bytes and numbers are allowed in dataset '
          'pickles.') from None


def safe_load_pickle(f, encoding='bytes'):
  """Unpickles `f` admitting only numpy arrays and plain Python containers.

  Enough for CIFAR's python archive (dicts of `bytes` keys, uint8 arrays and
  lists of ints, pickled by Python 2), and for the same data re-pickled by
  Python 3 with any protocol. Anything else that a pickle could call (os.system,
  eval, arbitrary classes) raises `UnsafePickleError` before it runs.

  Args:
    f: A binary file object.
    encoding: How to decode Python 2 `str` objects; 'bytes' keeps them as
      bytes, which is how CIFAR's keys (`b'data'`) are spelled.

  Returns:
    The unpickled object.

  Raises:
    UnsafePickleError: naming the refused global.
    pickle.UnpicklingError, EOFError: for a corrupt pickle.
  """
  return _RestrictedUnpickler(f, encoding=encoding).load()
