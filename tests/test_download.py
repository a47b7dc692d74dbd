"""Tests of datasets/download.py: downloads, safe extraction and unpickling."""

import hashlib
import io
import os
import pickle
import stat
import tarfile
import zipfile

import numpy as np
import pytest

from slimkit.datasets import download


def _sha256(data):
  return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- download


def test_download_verifies_checksum_and_draws_progress(http_server, tmp_path,
                                                       capsys):
  files, base = http_server
  payload = os.urandom(300_000)
  files['/archive.bin'] = payload
  dest = tmp_path / 'sub' / 'archive.bin'
  result = download.download(f'{base}/archive.bin', str(dest),
                             sha256=_sha256(payload),
                             md5=hashlib.md5(payload).hexdigest(),
                             chunk_size=64 * 1024)
  assert result == str(dest)
  assert dest.read_bytes() == payload
  assert os.listdir(dest.parent) == ['archive.bin']  # No temporary left.
  err = capsys.readouterr().err
  assert '100.0%' in err and 'MB/s' in err and 'archive.bin' in err


def test_download_wrong_checksum_deletes_file(http_server, tmp_path):
  files, base = http_server
  payload = b'not the archive you are looking for' * 100
  files['/archive.bin'] = payload
  dest = tmp_path / 'archive.bin'
  wrong = _sha256(b'something else')
  with pytest.raises(download.ChecksumError) as e:
    download.download(f'{base}/archive.bin', str(dest), sha256=wrong,
                      progress=False)
  assert wrong in str(e.value) and _sha256(payload) in str(e.value)
  assert os.listdir(tmp_path) == []


def test_download_wrong_md5_deletes_file(http_server, tmp_path):
  files, base = http_server
  files['/a'] = b'abc'
  with pytest.raises(download.ChecksumError):
    download.download(f'{base}/a', str(tmp_path / 'a'), md5='0' * 32,
                      progress=False)
  assert os.listdir(tmp_path) == []


def test_download_http_error_names_url(http_server, tmp_path):
  _, base = http_server
  with pytest.raises(download.DownloadError) as e:
    download.download(f'{base}/missing.tar.gz', str(tmp_path / 'x.tar.gz'),
                      progress=False)
  assert 'missing.tar.gz' in str(e.value) and '--archive_path' in str(e.value)
  assert os.listdir(tmp_path) == []


def test_obtain_prefers_local_files_without_network(tmp_path, caplog):
  # Port 9 on loopback (discard) is not served: any network use would fail.
  unreachable = 'http://127.0.0.1:9/never'
  local = tmp_path / 'user-copy.tar.gz'
  local.write_bytes(b'a user supplied archive')
  source = download.obtain('cifar-10-python.tar.gz', str(tmp_path),
                           unreachable, archive_path=str(local))
  assert source == download.Source(str(local), downloaded=False,
                                   verified=False)
  assert 'known checksum' in caplog.text

  in_dir = tmp_path / 'flower_photos.tgz'
  in_dir.write_bytes(b'already here')
  source = download.obtain('flower_photos.tgz', str(tmp_path), unreachable)
  assert source.path == str(in_dir) and not source.downloaded

  with pytest.raises(FileNotFoundError, match='--archive_path'):
    download.obtain('cifar-10-python.tar.gz', str(tmp_path), unreachable,
                    archive_path=str(tmp_path / 'nope.tar.gz'))


def test_obtain_recognises_known_checksum(tmp_path, monkeypatch):
  payload = b'pretend official archive'
  monkeypatch.setitem(download.KNOWN_SHA256, 'official.tgz', _sha256(payload))
  (tmp_path / 'official.tgz').write_bytes(payload)
  source = download.obtain('official.tgz', str(tmp_path), 'http://127.0.0.1:9/')
  assert source.verified and not source.downloaded


def test_obtain_downloads_missing_file(http_server, tmp_path):
  files, base = http_server
  files['/official.tgz'] = b'payload'
  source = download.obtain('official.tgz', str(tmp_path),
                           f'{base}/official.tgz', sha256=_sha256(b'payload'),
                           progress=False)
  assert source.downloaded and not source.verified  # Not a known file.
  assert (tmp_path / 'official.tgz').read_bytes() == b'payload'


def test_known_checksums_are_sha256_hex():
  for name, digest in download.KNOWN_SHA256.items():
    assert len(digest) == 64 and int(digest, 16) >= 0, name
  assert download.KNOWN_MD5['cifar-10-python.tar.gz'] == (
      'c58f30108f718f92721af3b95e74349a')


# ---------------------------------------------------------------- extraction


def _tar(path, members, mode='w:gz'):
  """Writes a tar; `members` are (TarInfo fields dict, data bytes or None)."""
  with tarfile.open(path, mode) as tar:
    for fields, data in members:
      info = tarfile.TarInfo(fields.pop('name'))
      for key, value in fields.items():
        setattr(info, key, value)
      if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
      else:
        tar.addfile(info)
  return str(path)


def _listing(directory):
  return sorted(os.path.relpath(os.path.join(root, name), directory)
                for root, dirs, names in os.walk(directory)
                for name in dirs + names)


def test_safe_extract_extracts_files_dirs_and_inner_links(tmp_path):
  archive = _tar(tmp_path / 'ok.tar.gz', [
      ({'name': 'top', 'type': tarfile.DIRTYPE}, None),
      ({'name': 'top/a.txt'}, b'hello'),
      ({'name': 'top/sub/b.txt'}, b'world'),
      ({'name': 'top/link', 'type': tarfile.SYMTYPE, 'linkname': 'a.txt'},
       None),
      ({'name': 'top/hard', 'type': tarfile.LNKTYPE,
        'linkname': 'top/a.txt'}, None),
  ])
  dest = tmp_path / 'out'
  extracted = download.safe_extract(archive, str(dest))
  assert (dest / 'top' / 'a.txt').read_bytes() == b'hello'
  assert (dest / 'top' / 'sub' / 'b.txt').read_bytes() == b'world'
  assert (dest / 'top' / 'link').read_bytes() == b'hello'
  assert (dest / 'top' / 'hard').read_bytes() == b'hello'
  assert str(dest.resolve() / 'top' / 'a.txt') in extracted


@pytest.mark.parametrize('member, reason', [
    ({'name': '/etc/evil'}, 'absolute'),
    ({'name': 'top/../../evil'}, '..'),
    ({'name': '../evil'}, '..'),
    ({'name': 'top/link', 'type': tarfile.SYMTYPE, 'linkname': '../../etc'},
     'outside'),
    ({'name': 'top/link', 'type': tarfile.SYMTYPE,
      'linkname': '/etc/passwd'}, 'absolute'),
    ({'name': 'top/hard', 'type': tarfile.LNKTYPE, 'linkname': '../secret'},
     'outside'),
    ({'name': 'top/tty', 'type': tarfile.CHRTYPE, 'devmajor': 4}, 'device'),
    ({'name': 'top/disk', 'type': tarfile.BLKTYPE, 'devmajor': 8}, 'device'),
    ({'name': 'top/pipe', 'type': tarfile.FIFOTYPE}, 'FIFO'),
])
def test_safe_extract_refuses_unsafe_tar_members(tmp_path, member, reason):
  name = member['name']
  data = None if 'type' in member else b'payload'
  # A harmless member first: it must not be written either.
  archive = _tar(tmp_path / 'bad.tar.gz',
                 [({'name': 'top/fine.txt'}, b'fine'), (dict(member), data)])
  dest = tmp_path / 'out'
  with pytest.raises(download.UnsafeArchiveError) as e:
    download.safe_extract(archive, str(dest))
  assert name in str(e.value) and reason in str(e.value)
  assert _listing(dest) == []
  assert not (tmp_path / 'evil').exists()


def test_safe_extract_refuses_unsafe_zip_members(tmp_path):
  for name in ('../evil.txt', '/abs/evil.txt', 'a/../../evil.txt'):
    archive = tmp_path / 'bad.zip'
    with zipfile.ZipFile(archive, 'w') as zf:
      zf.writestr('fine.txt', b'fine')
      zf.writestr(zipfile.ZipInfo(name), b'evil')
    with pytest.raises(download.UnsafeArchiveError, match='evil.txt'):
      download.safe_extract(str(archive), str(tmp_path / 'out'))
    assert _listing(tmp_path / 'out') == []

  archive = tmp_path / 'link.zip'
  with zipfile.ZipFile(archive, 'w') as zf:
    info = zipfile.ZipInfo('link')
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, '/etc/passwd')
  with pytest.raises(download.UnsafeArchiveError, match='symbolic link'):
    download.safe_extract(str(archive), str(tmp_path / 'out'))


def test_safe_extract_zip(tmp_path):
  archive = tmp_path / 'ok.zip'
  with zipfile.ZipFile(archive, 'w') as zf:
    zf.writestr('d/x.txt', b'x')
  download.safe_extract(str(archive), str(tmp_path / 'out'))
  assert (tmp_path / 'out' / 'd' / 'x.txt').read_bytes() == b'x'


def test_safe_extract_truncated_archive_keeps_nothing(tmp_path):
  rng = np.random.RandomState(0)
  archive = _tar(tmp_path / 'full.tar.gz', [
      ({'name': f'top/f{i}.bin'}, rng.bytes(50_000)) for i in range(4)])
  data = open(archive, 'rb').read()
  truncated = tmp_path / 'truncated.tar.gz'
  truncated.write_bytes(data[:len(data) * 2 // 3])
  dest = tmp_path / 'out'
  dest.mkdir()
  (dest / 'keep.txt').write_text('pre-existing')
  with pytest.raises(download.CorruptArchiveError, match='truncated'):
    download.safe_extract(str(truncated), str(dest))
  assert _listing(dest) == ['keep.txt']

  # The same for an uncompressed tar cut inside its last member.
  plain = _tar(tmp_path / 'full.tar', [
      ({'name': f'top/f{i}.bin'}, rng.bytes(50_000)) for i in range(4)],
               mode='w')
  cut = tmp_path / 'cut.tar'
  cut.write_bytes(open(plain, 'rb').read()[:180_000])
  with pytest.raises(download.CorruptArchiveError):
    download.safe_extract(str(cut), str(dest))
  assert _listing(dest) == ['keep.txt']


def test_safe_extract_refuses_non_archive(tmp_path):
  junk = tmp_path / 'junk.tar.gz'
  junk.write_bytes(b'this is not an archive at all' * 10)
  with pytest.raises(download.CorruptArchiveError, match='junk.tar.gz'):
    download.safe_extract(str(junk), str(tmp_path / 'out'))


# ---------------------------------------------------------------- unpickling


def _cifar_like_batch(rng):
  return {
      b'batch_label': b'training batch 1 of 5',
      b'labels': [int(x) for x in rng.randint(0, 10, size=4)],
      b'data': rng.randint(0, 256, size=(4, 3072)).astype(np.uint8),
      b'filenames': [b'a.png', b'b.png', b'c.png', b'd.png'],
  }


@pytest.mark.parametrize('protocol', [2, pickle.HIGHEST_PROTOCOL])
def test_safe_load_pickle_reads_cifar_batches(protocol):
  batch = _cifar_like_batch(np.random.RandomState(1))
  loaded = download.safe_load_pickle(
      io.BytesIO(pickle.dumps(batch, protocol=protocol)))
  assert loaded[b'labels'] == batch[b'labels']
  assert loaded[b'filenames'] == batch[b'filenames']
  assert loaded[b'batch_label'] == batch[b'batch_label']
  np.testing.assert_array_equal(loaded[b'data'], batch[b'data'])
  assert loaded[b'data'].dtype == np.uint8


class _RunsShell:
  """A pickle payload that would run a shell command when unpickled."""

  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


def test_safe_load_pickle_refuses_os_system_without_running_it(tmp_path):
  marker = tmp_path / 'pwned'
  payload = pickle.dumps({b'data': _RunsShell(f'touch {marker}')}, protocol=2)
  # Sanity: the payload really names os.system.
  assert b'system' in payload
  with pytest.raises(download.UnsafePickleError, match='system'):
    download.safe_load_pickle(io.BytesIO(payload))
  assert not marker.exists()


@pytest.mark.parametrize('payload', [
    b'cbuiltins\neval\n(Vprint(1)\ntR.',
    b'c__builtin__\ngetattr\n(c__builtin__\nlist\nVappend\ntR.',
    b'cnumpy\nload\n(Vx\ntR.',
    b'csubprocess\nPopen\n(Vls\ntR.',
])
def test_safe_load_pickle_refuses_other_callables(payload):
  with pytest.raises(download.UnsafePickleError, match='Refusing'):
    download.safe_load_pickle(io.BytesIO(payload))


def test_safe_load_pickle_allows_codecs_encode_only_for_latin1():
  ok = b'c_codecs\nencode\n(Vabc\nVlatin1\ntR.'
  assert download.safe_load_pickle(io.BytesIO(ok)) == b'abc'
  bad = b'c_codecs\nencode\n(Vabc\nVzlib_codec\ntR.'
  with pytest.raises(download.UnsafePickleError, match='latin1'):
    download.safe_load_pickle(io.BytesIO(bad))
